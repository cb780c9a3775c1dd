"""Benchmark: the same full fine-tune in ft and in Axolotl 0.19, end to end, side by side.

    .venv/bin/python bench/vs-axolotl/run.py [--repeat 2] [--steps 40] [--model-config tiny] [--device cpu]

Both train the same random-initialised Llama-style model (``--model-config``) on the same GSM8K rows
as Alpaca (prompt masked), one epoch of ``--steps`` steps of ``--batch`` rows, sequence length,
AdamW (torch), cosine schedule and learning rate alike, no packing, no evaluation, each leaving a
checkpoint of the last step and the final model, each starting from fresh caches (so both tokenize).
ft runs ``ft run``; Axolotl runs ``axolotl train CONFIG`` from its own venv (created when missing,
see ``--print-venv-plan``), with ``HF_HUB_OFFLINE=1`` and ``AXOLOTL_DO_NOT_TRACK=1`` and its LoRA
Triton kernels off. Reported: wall time from process start to exit, steps/s after the warm-up steps,
peak memory of the process tree (the sum of proportional set sizes, so pages that forked workers share
count once; Axolotl's tree is its accelerate launcher, the trainer and its tokenizing workers), the
largest single process's resident set, and peak CUDA memory on a GPU. Targets: ft faster end to
end and at least as fast per step.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench._harness import (add_common_args, add_device_args, add_workload_args, child_env, interleave, load_average, mean_step,  # noqa: E402
                            print_table, record, require_device, summarize, versions)
from bench._harness.axolotl import add_axolotl_args, ensure_venv, print_plan_and_exit  # noqa: E402


KERNELS = "ft kernels=ft"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_args(parser, repeat=2, warmup=1)
    add_device_args(parser)
    add_axolotl_args(parser)
    add_workload_args(parser, steps=40, steps_help="training steps (one epoch of steps x batch rows)",
                      warmup_steps_help="steps not counted in steps/s")
    parser.add_argument("--with-kernels", action="store_true",
                        help="a third side: ft with kernels=ft (its fused linear cross entropy)")
    parser.add_argument("--smoke", action="store_true",
                        help="ft's side only, 3 steps, not recorded (a start-up check that needs no Axolotl)")
    args = parser.parse_args(argv)
    if args.print_venv_plan:
        print_plan_and_exit(args)
    if args.smoke:
        args.repeat, args.warmup, args.steps, args.warmup_steps, args.no_record = 1, 0, 3, 0, True
    precision = args.precision or ("bf16" if args.device == "cuda" else "fp32")
    require_device(args.device)

    from bench._harness.sides import run_axolotl, run_ft
    from bench._harness.workload import build_model, parameter_count, write_gsm8k_alpaca

    load_before = load_average()
    python = None if args.smoke else ensure_venv(args)
    model = build_model(args.model_config)
    params = parameter_count(model)
    env = child_env(args.device, args.threads)
    train = dict(batch=args.batch, steps=args.steps, sequence_len=args.sequence_len,
                 logging_steps=args.logging_steps, precision=precision)
    with tempfile.TemporaryDirectory(prefix="bench-vs-axolotl-") as scratch:
        root = Path(scratch)
        rows = write_gsm8k_alpaca(root / "gsm8k_alpaca.jsonl", args.steps * args.batch)
        counter = iter(range(10**6))

        def figures(run: dict) -> dict:
            step = mean_step(run, args.warmup_steps)
            out = {"wall_s": run["wall_s"], "first_step_s": run["first_step_s"], "step_s": step,
                   "steps_per_s": 1 / step, "step_cpu_s": mean_step(run, args.warmup_steps, "step_cpu_times"),
                   "peak_rss_mb": run["peak_rss_mb"], "peak_process_rss_mb": run["peak_process_rss_mb"]}
            if "cuda_peak_mb" in run:
                out["cuda_peak_mb"] = run["cuda_peak_mb"]
            return out

        sides = {"ft": lambda: figures(run_ft(root / f"ft{next(counter)}", model, rows, env, **train))}
        if args.with_kernels:
            sides[KERNELS] = lambda: figures(run_ft(root / f"ftk{next(counter)}", model, rows, env,
                                                    extra=("+kernels=ft",), **train))
        if python is not None:
            sides = {"axolotl 0.19": lambda: figures(run_axolotl(python, root / f"ax{next(counter)}", model, rows, env,
                                                                 **train)), **sides}
        print(f"vs-axolotl: {args.model_config} ({params / 1e6:.1f} M parameters), {args.steps} steps x {args.batch} rows, "
              f"{args.device}, {precision}, {args.threads} threads")
        results = interleave(sides, args.repeat, args.warmup)

    metrics = ["wall_s", "first_step_s", "step_s", "steps_per_s", "step_cpu_s", "peak_rss_mb", "peak_process_rss_mb",
               "cuda_peak_mb"]
    summaries = summarize(results, metrics)
    if python is None:
        print_table("ft only (--smoke)", summaries, "ft", [("wall_s", "wall (s)"), ("step_s", "step (s)")])
        return 0
    base = "axolotl 0.19"
    print_table("ratio = ft / Axolotl (below 1: ft is lower)", summaries, base,
                [("wall_s", "wall, start to exit (s)"), ("first_step_s", "start to 1st step (s)"),
                 ("step_s", "step (s)"), ("steps_per_s", "steps/s"), ("step_cpu_s", "step CPU time (s)"),
                 ("peak_rss_mb", "peak mem, tree (MiB)"), ("peak_process_rss_mb", "peak RSS, 1 proc (MiB)"),
                 ("cuda_peak_mb", "CUDA peak (MiB)")])
    med = {side: {m: s["median"] for m, s in values.items()} for side, values in summaries.items()}
    wall = med[base]["wall_s"] / med["ft"]["wall_s"]
    speed = med["ft"]["steps_per_s"] / med[base]["steps_per_s"]
    memory = med["ft"]["peak_rss_mb"] / med[base]["peak_rss_mb"]
    print(f"\nend to end: ft {wall:.2f}x as fast as Axolotl (target > 1: {'met' if wall > 1 else 'missed'}); "
          f"steps/s: ft {speed:.2f}x Axolotl's (target >= 1: {'met' if speed >= 1 else 'missed'}); "
          f"peak memory (tree PSS) ft / Axolotl: {memory:.2f}")
    headline = [
        ("model", f"{args.model_config} ({params / 1e6:.0f} M), {args.steps} steps x {args.batch}, {precision}, {args.device}"),
        ("wall ft / Axolotl", f"{med['ft']['wall_s']:.0f} s / {med[base]['wall_s']:.0f} s = {1 / wall:.2f} "
                              f"(ft {wall:.2f}x as fast)"),
        ("steps/s ft / Axolotl", f"{med['ft']['steps_per_s']:.2f} / {med[base]['steps_per_s']:.2f} = {speed:.2f}"),
        ("peak memory ft / Axolotl", f"{med['ft']['peak_rss_mb']:.0f} / {med[base]['peak_rss_mb']:.0f} MiB = {memory:.2f}"),
        ("largest process ft / Axolotl", f"{med['ft']['peak_process_rss_mb']:.0f} / "
                                          f"{med[base]['peak_process_rss_mb']:.0f} MiB RSS"),
    ]
    if KERNELS in med:
        fused = med[KERNELS]["steps_per_s"] / med[base]["steps_per_s"]
        print(f"steps/s: ft with kernels=ft {fused:.2f}x Axolotl's (target >= 1: {'met' if fused >= 1 else 'missed'})")
        headline.append(("steps/s ft kernels=ft / Axolotl", f"{med[KERNELS]['steps_per_s']:.2f} / "
                                                            f"{med[base]['steps_per_s']:.2f} = {fused:.2f}"))
        headline.append(("peak memory ft kernels=ft / Axolotl", f"{med[KERNELS]['peak_rss_mb']:.0f} / "
                         f"{med[base]['peak_rss_mb']:.0f} MiB = {med[KERNELS]['peak_rss_mb'] / med[base]['peak_rss_mb']:.2f}"))
    if "cuda_peak_mb" in med["ft"] and "cuda_peak_mb" in med[base]:
        headline.append(("CUDA peak ft / Axolotl", f"{med['ft']['cuda_peak_mb']:.0f} / {med[base]['cuda_peak_mb']:.0f} MiB"))
    config = {"model_config": args.model_config, "parameters": params, "batch": args.batch, "steps": args.steps,
              "warmup_steps": args.warmup_steps, "sequence_len": args.sequence_len, "precision": precision,
              "device": args.device, "threads": args.threads, "data": f"first {args.steps * args.batch} GSM8K train rows as alpaca",
              "with_kernels": args.with_kernels}
    record("vs-axolotl", args, config, summaries, base, headline, load_before,
           {"ft": versions(), "axolotl": versions(str(python), ("axolotl", "torch", "transformers", "accelerate",
                                                             "datasets", "trl", "peft"))}, device=args.device)
    return 0


if __name__ == "__main__":
    sys.exit(main())
