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
    header = ["date (UTC)", "machine", "load avg (1 min, before → after)", "rounds", *labels, "versions", "note"]
    rows = []
    for entry in entries:
        values = dict(entry.get("headline", []))
        rows.append([entry["date"].replace("T", " ")[:16], _machine(entry), _load(entry),
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
        if rendered != current:
            print(f"{args.doc} is out of date with {args.results_dir}: run .venv/bin/python bench/render.py")
            return 1
        print(f"{args.doc} is up to date")
        return 0
    if rendered != current:
        args.doc.write_text(rendered)
        print(f"updated {args.doc}")
    else:
        print(f"{args.doc} already up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
