"""Render the history tables of BENCHMARKS.md from bench/results/<benchmark>.jsonl.

    .venv/bin/python bench/render.py            # rewrite the tables in place
    .venv/bin/python bench/render.py --check    # exit 1 when BENCHMARKS.md is not up to date

Each benchmark's table sits between ``<!-- bench-history:NAME -->`` and ``<!-- /bench-history:NAME -->``
in BENCHMARKS.md; only the text between the markers is rewritten, so the hand-written explanation
around it (and every section without markers) stays as it is. Results of a benchmark whose markers
are not in the document are left out (add the two marker lines where its table should go).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
DOC = REPO / "BENCHMARKS.md"


def load(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _machine(entry: dict) -> str:
    m = entry.get("machine", {})
    text = f"{m.get('cores', '?')}-core {m.get('arch', '')}"
    text += f", {m['gpu']}" if m.get("device") == "cuda" and m.get("gpu") else ", CPU only"
    return text + f", Python {m.get('python', '?')}"


def _versions(entry: dict) -> str:
    parts = []
    for side, found in entry.get("versions", {}).items():
        names = [n for n in ("ft", "axolotl", "torch", "transformers") if n in found]
        parts.append(f"{side}: " + ", ".join(f"{n} {found[n]}" for n in names))
    return "; ".join(parts)


def _load(entry: dict) -> str:
    load = entry.get("load_avg", {})
    before, after = load.get("before") or ["?"], load.get("after") or ["?"]
    return f"{before[0]} → {after[0]}"


def table(entries: list[dict]) -> str:
    labels: list[str] = []
    for entry in entries:
        for label, _ in entry.get("headline", []):
            if label not in labels:
                labels.append(label)
    header = ["date (UTC)", "commit", "machine", "load avg (1 min, before → after)", "rounds", *labels, "versions", "note"]
    rows = []
    for entry in entries:
        values = dict(entry.get("headline", []))
        rows.append([entry["date"].replace("T", " ")[:16], entry.get("commit", "-"), _machine(entry), _load(entry),
                     f"{entry.get('repeat', '?')} (+{entry.get('warmup', 0)} warm-up)",
                     *[values.get(label, "") for label in labels], _versions(entry), entry.get("note", "")])
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c).replace("|", "\\|") for c in row) + " |" for row in rows]
    return "\n".join(lines)


def render(doc: str, results_dir: Path, skipped: list[str] | None = None) -> str:
    for path in sorted(results_dir.glob("*.jsonl")):
        name = path.stem
        entries = load(path)
        if not entries:
            continue
        start, end = f"<!-- bench-history:{name} -->", f"<!-- /bench-history:{name} -->"
        block = f"{start}\n{table(entries)}\n{end}"
        if start in doc and end in doc:
            head, rest = doc.split(start, 1)
            doc = head + block + rest.split(end, 1)[1]
        elif skipped is not None:
            skipped.append(name)
    return doc


#: What a measured figure looks like in prose: a duration, a ratio (``1.6x``, ``0.31 of the ...``), a memory size,
#: a throughput, a share, or a before -> after pair of numbers. Config values written as keys (``save_every_minutes: 10``) are not prose.
MEASUREMENT = re.compile(
    r"(?<![\w.=/-])\d[\d,]*(?:\.\d+)?\s?(?:ms|s|min|minutes|seconds|hours|x|GiB|MiB|GB|MB|tokens/s|rows/s|s/step|%)(?![\w/])"
    r"|\d(?:\.\d+)?\s?(?:->|→)\s?-?\d"
    r"|(?<![\w.])\d\.\d+ of (?:the|its|a|naive|Axolotl|DDP|LoRA)\b")
#: How a paragraph names the record behind its figures.
RECORD_REFERENCE = re.compile(r"bench/results/[\w.-]+\.jsonl|<!-- bench-history:|<!-- /bench-history:")
#: A paragraph whose numbers are settings or requirements, not measurements, says so with this comment.
NOT_MEASURED = "<!-- figures: not measured -->"


def figure_documents() -> list[Path]:
    """The documents whose figures must name their records: README.md, BENCHMARKS.md, every plugin's README."""
    return [REPO / "README.md", DOC, REPO / "kernels" / "README.md", *sorted((REPO / "plugins").glob("*/README.md"))]


def paragraphs(text: str) -> list[tuple[int, str]]:
    """``(first line number, text)`` of each prose paragraph or table (blank-line separated; fenced and
    indented code blocks left out: commands, not claims)."""
    found: list[tuple[int, str]] = []
    current: list[str] = []
    start, fenced = 0, False
    for number, line in enumerate(text.splitlines(), 1):
        if line.strip().startswith("```"):
            fenced = not fenced
            continue
        if fenced or line.startswith("    ") and not current:
            continue
        if not line.strip():
            if current:
                found.append((start, "\n".join(current)))
            current = []
            continue
        if not current:
            start = number
        current.append(line)
    if current:
        found.append((start, "\n".join(current)))
    return found


def unrecorded_figures(path: Path) -> list[str]:
    """``file:line: figure`` for each paragraph that states a measured figure without naming its record
    (``bench/results/<benchmark>.jsonl``, or a rendered history table) or the not-measured marker."""
    problems = []
    for line, paragraph in paragraphs(path.read_text()):
        figures = MEASUREMENT.findall(paragraph.replace("`", " "))
        if figures and not RECORD_REFERENCE.search(paragraph) and NOT_MEASURED not in paragraph:
            problems.append(f"{path.relative_to(REPO)}:{line}: {figures[0].strip()!r} names no record")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only check that BENCHMARKS.md is up to date")
    parser.add_argument("--results-dir", type=Path, default=BENCH / "results")
    parser.add_argument("--doc", type=Path, default=DOC)
    args = parser.parse_args(argv)
    current = args.doc.read_text()
    skipped: list[str] = []
    rendered = render(current, args.results_dir, skipped)
    for name in skipped:
        print(f"{name}: no '<!-- bench-history:{name} -->' markers in {args.doc.name}; its results are not rendered")
    if args.check:
        problems = [p for doc in figure_documents() for p in unrecorded_figures(doc)]
        for problem in problems:
            print(problem)
        if problems:
            print(f"{len(problems)} paragraphs state figures without their record: name the bench/results/ file "
                  f"(or render a history table), or mark settings with {NOT_MEASURED}")
        if rendered != current:
            print(f"{args.doc} is out of date with {args.results_dir}: run .venv/bin/python bench/render.py")
            return 1
        if problems:
            return 1
        print(f"{args.doc} is up to date and every figure names its record")
        return 0
    if rendered != current:
        args.doc.write_text(rendered)
        print(f"updated {args.doc}")
    else:
        print(f"{args.doc} already up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
