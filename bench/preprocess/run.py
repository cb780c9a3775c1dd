"""Benchmark: tokenizing real data with ft's data stage, rows/s, side by side with Axolotl 0.19.

    .venv/bin/python bench/preprocess/run.py [--axolotl-python PATH | AXOLOTL_PYTHON=PATH | --no-axolotl] [--repeat 2]

Data: ../shared/data/gpteacher/toolformer.json (7,673 alpaca rows) and the chosen dialogues of
../shared/data/hh-rlhf/harmless-base-test.jsonl.gz turned into messages (chat_template), tokenized
with SmolLM2-135M-Instruct's tokenizer. ft runs its whole stage without the cache (read, format,
length policy, Arrow dataset), in one process (the default) and with data.num_proc=2. Axolotl runs its dataset wrapper (the tokenizing ``map``) in one
process, in its own virtual environment, on the same rows. Best of ``--repeat`` runs each; one record in
``bench/results/preprocess.jsonl``.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
sys.path.insert(0, str(REPO))

from bench._harness import add_common_args, load_average, record, versions  # noqa: E402
DATA = Path(os.environ.get("FT_BENCH_DATA", REPO.parent / "shared" / "data"))


def chat_rows() -> list[dict]:
    from ft_preference.loader import parse_hh_dialogue

    rows = []
    with gzip.open(DATA / "hh-rlhf" / "harmless-base-test.jsonl.gz", "rt") as handle:
        for line in handle:
            try:
                rows.append({"messages": parse_hh_dialogue(json.loads(line)["chosen"])})
            except Exception:  # noqa: BLE001 - skip the few malformed dialogues
                continue
    return rows


def time_ft(path: Path, fmt: str, num_proc: int | None, repeat: int) -> tuple[float, int]:
    from transformers import AutoTokenizer

    from ft_data.api import BUILTIN_FORMATS, prepare_data
    from ft_model.smollm2 import ensure_smollm2

    tokenizer = AutoTokenizer.from_pretrained(ensure_smollm2())
    cfg = {"path": str(path), "format": fmt, "sequence_len": 2048, "num_proc": num_proc, "shuffle": False}
    best, rows = float("inf"), 0
    for _ in range(repeat):
        started = time.perf_counter()
        prepared = prepare_data(cfg, tokenizer, dict(BUILTIN_FORMATS), use_cache=False, progress=False)
        best = min(best, time.perf_counter() - started)
        rows = next(iter(prepared.parts.values())).stats["rows_in"]
    return best, rows


def time_axolotl(python: str, path: Path, kind: str, repeat: int) -> float | None:
    from ft_model.smollm2 import ensure_smollm2

    if not Path(python).exists():
        return None
    with tempfile.TemporaryDirectory() as scratch:
        rows_path = Path(scratch) / "rows.jsonl"
        if path.suffix == ".json":
            rows_path.write_text("".join(json.dumps(r) + "\n" for r in json.loads(path.read_text())))
        else:
            rows_path.write_text(path.read_text())
        job = Path(scratch) / "job.json"
        job.write_text(json.dumps({"rows": str(rows_path), "tokenizer": str(ensure_smollm2()), "type": kind,
                                   "sequence_len": 2048, "num_proc": 1}))
        best = float("inf")
        for _ in range(repeat):
            done = subprocess.run([python, str(HERE / "axolotl_reference.py"), str(job), str(Path(scratch) / "out.jsonl")],
                                  capture_output=True, text=True, env={**os.environ, "TRL_EXPERIMENTAL_SILENCE": "1"})
            if done.returncode != 0:
                print(done.stderr[-2000:], file=sys.stderr)
                return None
            best = min(best, json.loads(done.stdout.strip().splitlines()[-1])["seconds"])
    return best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_args(parser, repeat=2, warmup=0)
    parser.add_argument("--axolotl-python", default=os.environ.get("AXOLOTL_PYTHON"),
                        help="python of a separate venv with axolotl==0.19.0 (or set AXOLOTL_PYTHON)")
    parser.add_argument("--no-axolotl", action="store_true", help="time ft only")
    args = parser.parse_args(argv)
    if not args.axolotl_python and not args.no_axolotl:
        parser.error("name the Axolotl venv's python: --axolotl-python PATH or AXOLOTL_PYTHON=PATH (see BENCHMARKS.md), "
                     "or time ft alone with --no-axolotl")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "true")
    load_before = load_average()
    summaries: dict[str, dict] = {}
    headline: list[tuple[str, str]] = []
    with tempfile.TemporaryDirectory() as scratch:
        chat_path = Path(scratch) / "hh_chat.jsonl"
        chat_path.write_text("".join(json.dumps(r) + "\n" for r in chat_rows()))
        jobs = [("alpaca", "alpaca (gpteacher/toolformer)", DATA / "gpteacher" / "toolformer.json", "alpaca"),
                ("chat", "chat_template (hh-rlhf chosen as messages)", chat_path, "chat_template")]
        print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
        for key, label, path, fmt in jobs:
            one, rows = time_ft(path, fmt, 1, args.repeat)
            two, _ = time_ft(path, fmt, 2, args.repeat)
            axolotl = None if args.no_axolotl else time_axolotl(args.axolotl_python, path, fmt, args.repeat)
            best = lambda seconds: {"median": rows / seconds, "spread": 0.0}  # noqa: E731 - best of the runs
            summaries[f"ft:{key}"] = {"rows_per_s": best(one)}
            summaries[f"ft num_proc=2:{key}"] = {"rows_per_s": best(two)}
            line = f"{label}: {rows} rows | ft 1 process: {rows / one:,.0f} rows/s | ft num_proc=2: {rows / two:,.0f} rows/s"
            headline += [(f"{key}: ft rows/s", f"{rows / one:,.0f}"), (f"{key}: ft num_proc=2", f"{rows / two:,.0f}")]
            if axolotl:
                summaries[f"axolotl:{key}"] = {"rows_per_s": best(axolotl)}
                line += f" | axolotl 0.19 1 process: {rows / axolotl:,.0f} rows/s | ft / axolotl: {axolotl / one:.1f}x"
                headline += [(f"{key}: Axolotl rows/s", f"{rows / axolotl:,.0f}"), (f"{key}: ft / Axolotl", f"{axolotl / one:.1f}x")]
            else:
                line += " | axolotl not timed"
            print(line, flush=True)
    found = {"ft": versions()}
    if args.axolotl_python and not args.no_axolotl:
        found["axolotl"] = versions(args.axolotl_python, ("axolotl", "torch", "transformers", "datasets", "tokenizers"))
    config = {"data": {"alpaca": "gpteacher/toolformer.json", "chat": "hh-rlhf/harmless-base-test chosen"},
              "sequence_len": 2048, "tokenizer": "SmolLM2-135M-Instruct", "figure": "rows/s, best of --repeat runs"}
    record("preprocess", args, config, summaries, "ft:alpaca", headline, load_before, found)
    return 0


if __name__ == "__main__":
    sys.exit(main())
