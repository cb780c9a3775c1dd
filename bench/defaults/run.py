"""Benchmark: the embedded defaults a new user runs first: wall time and the held-out score before and after.

    .venv/bin/python bench/defaults/run.py [--cases make-run,dpo-qlora,grpo,kd,diffusion] [--threads 2]

Each case is one ``ft run`` exactly as the README prints it (no data, no model named: ft's default task
and the builtin SmolLM2-135M-Instruct), in its own process with a fresh run folder. ``make-run`` is what
``make run`` runs (``ft run``). Recorded per case: wall time from process start to exit, peak memory of
the process tree, and every ``<name>_before`` / ``<name>_after`` pair the run wrote to ``summary.json``
(the quantity the method improves: the default task's held-out exact match, DPO's held-out reward
accuracy, GRPO's held-out reward, KD's held-out KL to the teacher, diffusion's masked-token accuracy).
One JSON line per case in ``bench/results/defaults.jsonl``; BENCHMARKS.md's table is rendered from it.
Run it alone: the cases take minutes each on the 2-core CPU, and other jobs stretch the wall times.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench._harness import (add_common_args, add_device_args, child_env, load_average, record,  # noqa: E402
                            require_device, run_timed, versions)

#: Case name -> the arguments after ``ft run`` (what the README and the plugin READMEs print).
CASES: dict[str, list[str]] = {
    "make-run": [],
    "lora": ["+adapter=lora"],
    "dpo-qlora": ["+adapter=qlora", "+method=dpo"],
    "ipo": ["+method=ipo"],
    "kto": ["+method=kto"],
    "orpo": ["+method=orpo"],
    "simpo": ["+method=simpo"],
    "grpo": ["+method=grpo"],
    "kd": ["+method=kd"],
    "diffusion": ["+method=diffusion"],
}
DEFAULT_CASES = "make-run,dpo-qlora,grpo,kd,diffusion"


def score_pairs(summary: dict[str, object]) -> dict[str, tuple[float, float]]:
    """``{name: (before, after)}`` for every ``<name>_before`` / ``<name>_after`` pair of numbers."""
    pairs = {}
    for key, before in summary.items():
        if key.endswith("_before"):
            name = key[: -len("_before")]
            after = summary.get(f"{name}_after")
            if isinstance(before, (int, float)) and isinstance(after, (int, float)):
                pairs[name] = (float(before), float(after))
    return pairs


def minutes(seconds: float) -> str:
    return f"{int(seconds // 60)} min {round(seconds % 60):02d} s"


def run_case(name: str, root: Path, env: dict[str, str]) -> dict[str, object]:
    """One embedded default in its own process; its wall time, memory and summary."""
    command = [sys.executable, "-m", "ft.cli", "run", *CASES[name], f"run.root={root}", f"run.name={name}"]
    print(f"[bench] {name}: ft run {' '.join(CASES[name])}", flush=True)
    timed = run_timed(command, env=env)
    summary = json.loads((root / name / "summary.json").read_text())
    return {"wall_s": timed["wall_s"], "peak_rss_mb": timed["peak_rss_mb"], "summary": summary,
            "output_tail": timed["output_tail"][-1500:]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_args(parser, repeat=1, warmup=0)
    add_device_args(parser)
    parser.add_argument("--cases", default=DEFAULT_CASES,
                        help=f"comma-separated, of: {', '.join(CASES)}, or 'all' (default {DEFAULT_CASES})")
    parser.add_argument("--list", action="store_true", help="print each case's command and exit")
    args = parser.parse_args(argv)
    names = list(CASES) if args.cases == "all" else [c.strip() for c in args.cases.split(",") if c.strip()]
    unknown = [n for n in names if n not in CASES]
    if unknown:
        parser.error(f"unknown case '{unknown[0]}'; cases: {', '.join(CASES)}")
    if args.list:
        for name in names:
            print(f"{name}: ft run {' '.join(CASES[name])}".rstrip())
        return 0
    require_device(args.device)
    env = child_env(args.device, args.threads)
    found = {"ft": versions()}
    with tempfile.TemporaryDirectory(prefix="ft-bench-defaults-") as tmp:
        for name in names:
            load_before = load_average()
            result = run_case(name, Path(tmp), env)
            scores = score_pairs(result["summary"])  # type: ignore[arg-type]
            shown = "; ".join(f"{k} {b:.3g} -> {a:.3g}" for k, (b, a) in scores.items()) or "-"
            headline = [("command", f"ft run {' '.join(CASES[name])}".rstrip()),
                        ("wall", minutes(float(result["wall_s"]))),  # type: ignore[arg-type]
                        ("peak memory", f"{float(result['peak_rss_mb']) / 1024:.1f} GiB"),  # type: ignore[arg-type]
                        ("held-out, before -> after", shown)]
            summaries = {name: {"wall_s": {"median": result["wall_s"], "spread": 0.0},
                                "peak_rss_mb": {"median": result["peak_rss_mb"], "spread": 0.0}}}
            record("defaults", args, {"case": name, "arguments": CASES[name], "threads": args.threads}, summaries,
                   name, headline, load_before, found, args.device,
                   extra={"scores": {k: list(v) for k, v in scores.items()}, "summary": result["summary"],
                          "output_tail": result["output_tail"]})
    return 0


if __name__ == "__main__":
    sys.exit(main())
