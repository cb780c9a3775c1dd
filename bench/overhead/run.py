"""Benchmark: ft's SFT step against the same step written directly with ``transformers.Trainer``.

    .venv/bin/python bench/overhead/run.py [--repeat 3] [--steps 30] [--model-config tiny] [--device cpu]

Both sides train the same random-initialised Llama-style model (``--model-config``: tiny, about 16 M
parameters, by default, so that any per-step cost ft adds is as visible as it can be) on the same
GSM8K rows as Alpaca, with the same batch, AdamW, cosine schedule, logging interval, seed and torch
threads, each in a fresh process, rounds interleaved. ft runs as ``ft run`` (the real command) with
one extra plugin holding the step timer; the baseline is ``bench/_harness/hf_sft.py``. The figure is
the mean step time after the warm-up steps (data loading, forward, backward, optimizer, logging and
callbacks); the target is ft within 3% of transformers (ratio <= 1.03).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench._harness import (REPO, add_common_args, add_device_args, add_workload_args, child_env, interleave, load_average,  # noqa: E402
                            mean_step, print_table, record, require_device, run_timed, summarize, versions)

from bench._harness.sides import LR  # noqa: E402

TARGET = 1.03


def ft_command(model: Path, rows: Path, root: Path, args: argparse.Namespace, precision: str) -> list[str]:
    """``ft run`` on the same rows; no checkpoint, final model or plot (the baseline makes none)."""
    from bench._harness.sides import ft_train_command

    return ft_train_command(model, rows, batch=args.batch, steps=args.total_steps, sequence_len=args.sequence_len,
                            logging_steps=args.logging_steps, precision=precision, load_bf16=False,
                            extra=(f"trainer.save_steps={args.total_steps + 1}", f"run.root={root}",
                                   "run.save_final_model=false", "run.plot=false"))


def hf_command(model: Path, rows: Path, args: argparse.Namespace, precision: str) -> list[str]:
    return [sys.executable, "-m", "bench._harness.hf_sft", "--model", str(model), "--rows", str(rows),
            "--batch", str(args.batch), "--steps", str(args.total_steps), "--lr", str(LR),
            "--sequence-len", str(args.sequence_len), "--logging-steps", str(args.logging_steps),
            "--precision", precision, "--seed", "42"]


def check_same_data(model: Path, rows: Path, sequence_len: int) -> int:
    """Both sides must train on identical tokens: compare ft's data stage with the baseline's own
    tokenization row by row; return the number of examples."""
    import json

    from transformers import AutoTokenizer

    from bench._harness.hf_sft import tokenize
    from ft_data.api import BUILTIN_FORMATS, prepare_data

    tokenizer = AutoTokenizer.from_pretrained(model)
    baseline = tokenize([json.loads(line) for line in rows.open()], tokenizer, sequence_len)
    cfg = {"path": str(rows), "format": "alpaca", "sequence_len": sequence_len, "shuffle": False}
    ours = prepare_data(cfg, tokenizer, dict(BUILTIN_FORMATS), use_cache=False, progress=False).train
    same = len(ours) == len(baseline) and all(
        a["input_ids"] == b["input_ids"] and a["labels"] == b["labels"] for a, b in zip(ours, baseline))
    if not same:
        raise SystemExit("ft and the baseline tokenized the rows differently; the comparison would be unfair")
    return len(baseline)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_args(parser, repeat=3, warmup=1)
    add_device_args(parser)
    add_workload_args(parser, steps=50, steps_help="timed steps per run",
                      warmup_steps_help="steps run first in each process and not timed")
    parser.add_argument("--smoke", action="store_true", help="one round of 2 steps per side, not recorded (a start-up check)")
    args = parser.parse_args(argv)
    if args.smoke:
        args.repeat, args.warmup, args.steps, args.warmup_steps, args.no_record = 1, 0, 1, 0, True
    args.total_steps = args.steps + args.warmup_steps + 1  # the first step has no interval before it
    precision = args.precision or ("bf16" if args.device == "cuda" else "fp32")
    require_device(args.device)

    from bench._harness.workload import build_model, parameter_count, write_gsm8k_alpaca

    load_before = load_average()
    model = build_model(args.model_config)
    params = parameter_count(model)
    env = child_env(args.device, args.threads)
    with tempfile.TemporaryDirectory(prefix="bench-overhead-") as scratch:
        root = Path(scratch)
        rows = write_gsm8k_alpaca(root / "gsm8k_alpaca.jsonl", args.total_steps * args.batch)
        examples = check_same_data(model, rows, args.sequence_len)
        counter = iter(range(10**6))

        def side(cmd: list[str]) -> dict:
            run = run_timed(cmd, env=env, cwd=REPO, timing_file=True)
            out = {"step_s": mean_step(run, args.warmup_steps),
                   "step_cpu_s": mean_step(run, args.warmup_steps, "step_cpu_times"),
                   "wall_s": run["wall_s"], "peak_rss_mb": run["peak_rss_mb"]}
            if "cuda_peak_mb" in run:
                out["cuda_peak_mb"] = run["cuda_peak_mb"]
            return out

        def ft_side() -> dict:
            return side(ft_command(model, rows, root / f"runs{next(counter)}", args, precision))

        def hf_side() -> dict:
            return side(hf_command(model, rows, args, precision))

        print(f"overhead: {args.model_config} ({params / 1e6:.1f} M parameters), batch {args.batch}, "
              f"{args.steps} timed steps after {args.warmup_steps}, {args.device}, {precision}, {args.threads} threads")
        results = interleave({"transformers.Trainer": hf_side, "ft": ft_side}, args.repeat, args.warmup)

    metrics = ["step_s", "step_cpu_s", "wall_s", "peak_rss_mb", "cuda_peak_mb"]
    summaries = summarize(results, metrics)
    print_table("per-step time (median of rounds; ratio = ft / transformers.Trainer)", summaries, "transformers.Trainer",
                [("step_s", "step (s)"), ("step_cpu_s", "step CPU time (s)"), ("wall_s", "process wall (s)"), ("peak_rss_mb", "peak memory (MiB)"),
                 ("cuda_peak_mb", "CUDA peak (MiB)")])
    ratio = summaries["ft"]["step_s"]["median"] / summaries["transformers.Trainer"]["step_s"]["median"]
    cpu_ratio = summaries["ft"]["step_cpu_s"]["median"] / summaries["transformers.Trainer"]["step_cpu_s"]["median"]
    verdict = "met" if ratio <= TARGET else "missed"
    print(f"\nft / transformers.Trainer step time: {ratio:.3f} (target <= {TARGET}: {verdict}); "
          f"step CPU time: {cpu_ratio:.3f}")
    headline = [
        ("model", f"{args.model_config} ({params / 1e6:.0f} M), batch {args.batch}, {precision}, {args.device}"),
        ("step, transformers", f"{summaries['transformers.Trainer']['step_s']['median'] * 1000:.0f} ms "
                               f"(±{50 * summaries['transformers.Trainer']['step_s']['spread']:.1f}%)"),
        ("step, ft", f"{summaries['ft']['step_s']['median'] * 1000:.0f} ms (±{50 * summaries['ft']['step_s']['spread']:.1f}%)"),
        ("ft / transformers, step", f"{ratio:.3f} (target <= {TARGET}: {verdict})"),
        ("ft / transformers, step CPU time", f"{cpu_ratio:.3f}"),
    ]
    config = {"model_config": args.model_config, "parameters": params, "batch": args.batch, "steps": args.steps,
              "warmup_steps": args.warmup_steps, "sequence_len": args.sequence_len, "logging_steps": args.logging_steps,
              "precision": precision, "device": args.device, "threads": args.threads,
              "data": f"first {examples} GSM8K train rows as alpaca, identical tokens on both sides"}
    record("overhead", args, config, summaries, "transformers.Trainer", headline, load_before,
           {"ft": versions()}, device=args.device)
    return 0


if __name__ == "__main__":
    sys.exit(main())
