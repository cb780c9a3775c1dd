"""Benchmark: SmolLM2-135M-Instruct adapted to masked diffusion on ft's default task.

    .venv/bin/python bench/diffusion/run.py [--steps 60] [--threads 2]

One ``ft run +method=diffusion`` (the embedded default, full fine-tune, ``--steps`` steps), scored before and
after training in the same run (the baseline is the same model before training): held-out masked-token
accuracy at mask ratio 0.5 (32 rows split off the training rows) and exact match of answers generated with
the unmasking sampler on the default task's held-out rows (32 in the embedded default; ``--extra
data.task.eval_rows=64`` for more). Also wall time.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench._harness import (add_common_args, add_device_args, child_env, load_average, print_table, record,  # noqa: E402
                            require_device, run_timed, versions)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_args(parser, repeat=1, warmup=0)
    add_device_args(parser)
    parser.add_argument("--steps", type=int, default=60, help="optimizer steps (default 60, the embedded default's)")
    parser.add_argument("--extra", nargs="*", default=[], help="more overrides for ft run")
    args = parser.parse_args()
    require_device(args.device)
    env = child_env(args.device, threads=args.threads)
    load_before = load_average()
    settings = [f"trainer.max_steps={args.steps}", *args.extra]
    with tempfile.TemporaryDirectory(prefix="ft-bench-diffusion-") as scratch:
        root = Path(scratch)
        command = [sys.executable, "-m", "ft.cli", "run", "+method=diffusion", *settings, f"run.root={root}", "run.name=d"]
        print(f"  ft run +method=diffusion {' '.join(settings)}", flush=True)
        timed = run_timed(command, env=env)
        summary = json.loads((root / "d" / "summary.json").read_text())
        task_rows = yaml.safe_load((root / "d" / "config.yaml").read_text())["data"]["task"]["eval_rows"]
    sides = {
        "before": {"masked_accuracy": summary["masked_accuracy_before"], "exact_match": summary["task_accuracy_before"]},
        "after": {"masked_accuracy": summary["masked_accuracy_after"], "exact_match": summary["task_accuracy_after"],
                  "wall_s": timed["wall_s"]},
    }
    summaries = {side: {k: {"median": v, "min": v, "max": v, "n": 1, "spread": 0.0} for k, v in values.items()}
                 for side, values in sides.items()}
    print_table("SmolLM2 adapted to masked diffusion, default task (baseline: before training)", summaries, "before",
                [("masked_accuracy", "masked-token acc"), ("exact_match", "exact match"), ("wall_s", "wall s")])
    headline = [
        ("held-out masked-token accuracy at ratio 0.5, before -> after",
         f"{sides['before']['masked_accuracy']:.3f} -> {sides['after']['masked_accuracy']:.3f}"),
        ("default-task exact match (unmasking sampler), before -> after",
         f"{sides['before']['exact_match']:.3f} -> {sides['after']['exact_match']:.3f} ({task_rows} rows)"),
        ("wall time of the whole run (steps)", f"{timed['wall_s'] / 60:.1f} min ({args.steps} steps)"),
    ]
    record("diffusion", args, {"steps": args.steps, "extra": args.extra, "heldout_rows": 32, "task_rows": task_rows},
           summaries, "before", headline, load_before, {"ft": versions()}, device=args.device)
    return 0


if __name__ == "__main__":
    sys.exit(main())
