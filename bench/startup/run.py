"""Benchmark: how long ft's commands take to answer, and to reach the first training step, vs Axolotl.

    .venv/bin/python bench/startup/run.py [--repeat 5] [--train-repeat 2] [--no-axolotl]

Times, from process start to exit, ``ft --help``, ``ft validate`` (the default config: compose, check
every key, load nothing), ``ft plugins`` and Axolotl 0.19's ``axolotl --help``; and, from process
start to the end of the first optimizer step, a tiny training run in each (``ft run`` and
``axolotl train`` on the same random-initialised model and GSM8K rows, fresh caches, one step).
Rounds are interleaved. Targets: ``ft validate`` under 1 s; ft ahead of Axolotl on both comparisons.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench._harness import (REPO, add_common_args, add_device_args, child_env, interleave, load_average, print_table,  # noqa: E402
                            record, run_timed, summarize, versions)
from bench._harness.axolotl import add_axolotl_args, axolotl_command, ensure_venv, print_plan_and_exit  # noqa: E402

VALIDATE_TARGET_S = 1.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_args(parser, repeat=5, warmup=1)
    add_device_args(parser)
    add_axolotl_args(parser)
    parser.add_argument("--train-repeat", type=int, default=2, help="measured rounds of the first-step runs (default 2)")
    parser.add_argument("--model-config", default="tiny", help="model of the first-step runs (default tiny)")
    parser.add_argument("--no-axolotl", action="store_true", help="time ft only")
    parser.add_argument("--smoke", action="store_true", help="ft's commands once each, no training, not recorded")
    args = parser.parse_args(argv)
    if args.print_venv_plan:
        print_plan_and_exit(args)
    if args.smoke:
        args.repeat, args.warmup, args.no_axolotl, args.no_record, args.train_repeat = 1, 0, True, True, 0

    load_before = load_average()
    python = None if args.no_axolotl else ensure_venv(args)
    env = child_env(args.device, args.threads)
    ft = str(Path(sys.executable).parent / "ft")
    commands = {"ft --help": [ft, "--help"], "ft validate": [ft, "validate"], "ft plugins": [ft, "plugins"]}
    if python is not None:
        commands["axolotl --help"] = [*axolotl_command(python), "--help"]
        ax_env = {**env, "PATH": str(python.parent) + ":" + env.get("PATH", "")}

    def timed(cmd: list[str], side_env: dict) -> dict:
        return {"wall_s": run_timed(cmd, env=side_env, cwd=REPO)["wall_s"]}

    print(f"startup: {', '.join(commands)} ({args.repeat} rounds after {args.warmup} warm-up)")
    results = interleave({name: (lambda c=cmd, n=name: timed(c, ax_env if n.startswith("axolotl") else env))
                          for name, cmd in commands.items()}, args.repeat, args.warmup)
    summaries = summarize(results, ["wall_s"])
    print_table("commands, process start to exit (ratio to ft --help)", summaries, "ft --help", [("wall_s", "wall (s)")])

    first: dict = {}
    if args.train_repeat:
        from bench._harness.sides import run_axolotl, run_ft
        from bench._harness.workload import build_model, write_gsm8k_alpaca

        model = build_model(args.model_config)
        train = dict(batch=8, steps=1, sequence_len=1024, logging_steps=1, precision="fp32")
        with tempfile.TemporaryDirectory(prefix="bench-startup-") as scratch:
            root = Path(scratch)
            rows = write_gsm8k_alpaca(root / "rows.jsonl", 64)
            counter = iter(range(10**6))
            sides = {"ft run": lambda: {"first_step_s": run_ft(root / f"ft{next(counter)}", model, rows, env,
                                                               **train)["first_step_s"]}}
            if python is not None:
                sides["axolotl train"] = lambda: {"first_step_s": run_axolotl(
                    python, root / f"ax{next(counter)}", model, rows, env, **train)["first_step_s"]}
            print(f"\nfirst step: {', '.join(sides)} ({args.train_repeat} rounds after {args.warmup} warm-up)")
            first = summarize(interleave(sides, args.train_repeat, args.warmup), ["first_step_s"])
        if "axolotl train" in first:
            print_table("process start to the end of the first training step (ratio to axolotl train)",
                        first, "axolotl train", [("first_step_s", "first step (s)")])
        else:
            print_table("process start to the end of the first training step", first, "ft run",
                        [("first_step_s", "first step (s)")])

    med = {name: s["wall_s"]["median"] for name, s in summaries.items()}
    validate = med["ft validate"]
    print(f"\nft validate: {validate:.2f} s (target < {VALIDATE_TARGET_S:.0f} s: "
          f"{'met' if validate < VALIDATE_TARGET_S else 'missed'})")
    headline = [("ft --help / validate / plugins", f"{med['ft --help']:.2f} / {validate:.2f} / {med['ft plugins']:.2f} s "
                                                   f"(validate target < 1 s: {'met' if validate < VALIDATE_TARGET_S else 'missed'})")]
    if "axolotl --help" in med:
        ratio = med["ft --help"] / med["axolotl --help"]
        print(f"ft --help / axolotl --help: {ratio:.3f}")
        headline.append(("axolotl --help (ft --help / it)", f"{med['axolotl --help']:.2f} s ({ratio:.2f})"))
    if first:
        ft_first = first["ft run"]["first_step_s"]["median"]
        shown = f"{ft_first:.1f} s"
        if "axolotl train" in first:
            ax_first = first["axolotl train"]["first_step_s"]["median"]
            print(f"first step, ft run / axolotl train: {ft_first / ax_first:.3f}")
            shown += f" / {ax_first:.1f} s = {ft_first / ax_first:.2f}"
        headline.append(("first step, ft / Axolotl" if "axolotl train" in first else "first step, ft", shown))
    all_summaries = {**summaries, **first}
    version_info = {"ft": versions()}
    if python is not None:
        version_info["axolotl"] = versions(str(python), ("axolotl", "torch", "transformers"))
    record("startup", args, {"model_config": args.model_config, "train_repeat": args.train_repeat,
                             "threads": args.threads, "device": args.device},
           all_summaries, "ft --help", headline, load_before, version_info, device=args.device)
    return 0


if __name__ == "__main__":
    sys.exit(main())
