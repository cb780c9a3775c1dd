"""Benchmark: knowledge distillation on SmolLM2, against cross entropy alone, and online against offline.

    .venv/bin/python bench/kd/run.py [--steps 60] [--student-layers 8] [--memory-steps 10]

Quality (the embedded default's setting, equal steps and rows): SmolLM2-135M-Instruct is the teacher; the
student is SmolLM2 cut to ``--student-layers`` layers (``teacher=self``: one model load, the teacher's top-32
kept first). Two runs on the default task, identical but for ``method.kd_alpha``: 1 (distillation + CE) and 0
(CE only; the KD term is still computed and logged, so both runs cost the same). Figures: held-out KL(teacher ||
student) per trained token after training (64 rows split off the training rows) and the default task's
held-out accuracy (its own 64 rows) before and after.

Memory (same student, from ``ft kd make-student``): ``--memory-steps`` steps with the teacher online (loaded
next to the student) and offline (its top-32 dumped beforehand by ``ft kd dump``); peak memory of each
process tree. The ratio is offline over online.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench._harness import (add_common_args, add_device_args, child_env, load_average, print_table, record,  # noqa: E402
                            require_device, run_timed, summarize, versions)

TEACHER = "builtin:smollm2-135m-instruct"


def ft(*args: str) -> list[str]:
    return [sys.executable, "-m", "ft.cli", *args]


def run_side(command: list[str], root: Path, env: dict[str, str]) -> dict[str, float]:
    result = run_timed(command, env=env)
    runs = sorted(p for p in root.iterdir() if (p / "summary.json").is_file())
    summary = json.loads((runs[-1] / "summary.json").read_text())
    out = {"wall_s": result["wall_s"], "peak_rss_mb": result["peak_rss_mb"]}
    for key in ("heldout_kl_before", "heldout_kl_after", "task_accuracy_before", "task_accuracy_after", "train_loss"):
        if isinstance(summary.get(key), (int, float)):
            out[key] = float(summary[key])
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_args(parser, repeat=1, warmup=0)
    add_device_args(parser)
    parser.add_argument("--steps", type=int, default=60, help="optimizer steps of the quality runs (default 60)")
    parser.add_argument("--student-layers", type=int, default=8, help="decoder layers of the student (default 8)")
    parser.add_argument("--memory-steps", type=int, default=10, help="steps of the online/offline memory runs")
    parser.add_argument("--skip-memory", action="store_true", help="only the quality comparison")
    args = parser.parse_args()
    require_device(args.device)
    env = child_env(args.device)
    load_before = load_average()
    heldout = ["data.val_size=64", f"trainer.max_steps={args.steps}", "run.save_final_model=false", "run.plot=false"]
    results: dict[str, list[dict[str, float]]] = {}
    with tempfile.TemporaryDirectory(prefix="ft-bench-kd-") as scratch:
        work = Path(scratch)
        for name, alpha in (("ce_only", "0"), ("kd", "1")):
            root = work / name
            print(f"  {name}: {args.steps} steps, student of {args.student_layers} layers ...", flush=True)
            command = ft("run", "+method=kd", f"method.student_layers={args.student_layers}", f"method.kd_alpha={alpha}",
                         f"run.root={root}", *heldout)
            results[name] = [run_side(command, root, env)]
            print(f"    {results[name][0]}", flush=True)
        if not args.skip_memory:
            student = work / "student"
            run_timed(ft("kd", "make-student", TEACHER, "--layers", str(args.student_layers), "--out", str(student)), env=env)
            dump = work / "dump"
            data = [f"model.name_or_path={student}", "data.val_size=64"]
            run_timed(ft("kd", "dump", "--teacher", TEACHER, "--out", str(dump), "--top-k", "32", *data), env=env)
            short = [f"model.name_or_path={student}", "data.val_size=64", f"trainer.max_steps={args.memory_steps}",
                     "run.save_final_model=false", "run.plot=false", "method.eval_kl=false"]
            for name, teacher in (("online", f"method.teacher={TEACHER}"), ("offline", f"method.logprobs={dump}")):
                root = work / name
                print(f"  {name}: {args.memory_steps} steps ...", flush=True)
                results[name] = [run_side(ft("run", "+method=kd", teacher, f"run.root={root}", *short), root, env)]
                print(f"    {results[name][0]}", flush=True)
    metrics = ["heldout_kl_after", "task_accuracy_before", "task_accuracy_after", "train_loss", "wall_s", "peak_rss_mb"]
    summaries = summarize(results, metrics)
    print_table("distillation vs cross entropy alone (equal steps and rows)",
                {k: v for k, v in summaries.items() if k in ("ce_only", "kd")}, "ce_only",
                [("heldout_kl_after", "held-out KL after"), ("task_accuracy_after", "task accuracy after"),
                 ("wall_s", "wall s"), ("peak_rss_mb", "peak MB")])
    kd, ce = summaries["kd"], summaries["ce_only"]
    headline = [
        ("held-out KL from the teacher after, KD / CE-only",
         f"{kd['heldout_kl_after']['median'] / ce['heldout_kl_after']['median']:.3f} "
         f"({kd['heldout_kl_after']['median']:.3f} vs {ce['heldout_kl_after']['median']:.3f})"),
        ("default-task accuracy after (KD, CE-only; before)",
         f"{kd['task_accuracy_after']['median']:.3f}, {ce['task_accuracy_after']['median']:.3f}; "
         f"{kd['task_accuracy_before']['median']:.3f}"),
    ]
    if "online" in summaries:
        print_table("online vs offline teacher (same student)", {k: summaries[k] for k in ("online", "offline")},
                    "online", [("peak_rss_mb", "peak MB"), ("wall_s", "wall s")])
        on, off = summaries["online"]["peak_rss_mb"]["median"], summaries["offline"]["peak_rss_mb"]["median"]
        headline.append(("peak memory, offline / online", f"{off / on:.3f} ({off:.0f} MB vs {on:.0f} MB)"))
    record("kd", args, {"steps": args.steps, "student_layers": args.student_layers, "memory_steps": args.memory_steps,
                        "teacher": TEACHER, "top_k": 32, "heldout_rows": 64},
           summaries, "ce_only", headline, load_before, {"ft": versions()}, device=args.device)
    return 0


if __name__ == "__main__":
    sys.exit(main())
