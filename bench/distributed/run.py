"""Benchmark: memory per rank of DDP vs FSDP2 vs ZeRO-3, 2 ranks, full fine-tune of SmolLM2-135M with AdamW.

    .venv/bin/python bench/distributed/run.py [--modes ddp fsdp zero3] [--steps 3] [--sequence-len 256]

Each mode is one ``ft run`` of the real model (fp32, AdamW, micro batch 1 per rank) started by torchrun with
2 processes, plus a probe (``bench/distributed/memory_probe.py``) that records, on each rank just before the
second optimizer step, the bytes of every live tensor storage (parameters + gradients + optimizer state +
the engine's buffers: what sharding divides) and the peak resident memory. DDP is the baseline: each rank
holds everything, so sharding over 2 ranks should bring the tensor figure close to 1/2 of DDP's. On CPU
the ranks are gloo processes; ``--device cuda`` runs the same modes on 2 GPUs (``tensor_mb`` then counts
host tensors only, so read ``torch.cuda.max_memory_allocated`` there instead: pending).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench._harness import (add_common_args, add_device_args, child_env, load_average, print_table, record,  # noqa: E402
                            require_device, run_timed, versions)

MODES = {"ddp": ["dist=ddp"], "fsdp": ["dist=fsdp"], "zero2": ["dist=zero2"], "zero3": ["dist=zero3"]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_args(parser, repeat=1, warmup=0)
    add_device_args(parser)
    parser.add_argument("--modes", nargs="+", default=["ddp", "fsdp", "zero3"], choices=sorted(MODES),
                        help="dist options to measure; the first is the baseline (default: ddp fsdp zero3)")
    parser.add_argument("--steps", type=int, default=3, help="optimizer steps (default 3; measured after step 2)")
    parser.add_argument("--sequence-len", type=int, default=256, help="data.sequence_len (default 256)")
    parser.add_argument("--model", default="builtin:smollm2-135m-instruct", help="model.name_or_path (default SmolLM2-135M-Instruct)")
    args = parser.parse_args()
    require_device(args.device)
    load_before = load_average()
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="ft-bench-dist-") as scratch:
        from ft_testing import write_chat_rows

        root = Path(scratch)
        rows = write_chat_rows(root / "chat.jsonl", n=64)
        for mode in args.modes:
            probe = root / f"probe-{mode}"
            probe.mkdir()
            env = child_env(args.device, threads=args.threads, FT_BENCH_MEMORY_DIR=str(probe), FT_CACHE_DIR=str(root / "cache"))
            settings = [*MODES[mode], f"model.name_or_path={args.model}", "data=chat", f"data.path={rows}",
                        f"data.sequence_len={args.sequence_len}", "trainer.micro_batch_size=1", f"trainer.max_steps={args.steps}",
                        "optim.name=adamw_torch", "trainer.precision=" + ("bf16" if args.device == "cuda" else "fp32"),
                        "trainer.save_every_minutes=null", "run.save_final_model=false", "run.plot=false",
                        f"run.root={root / 'runs'}", f"run.name={mode}"]
            command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                       "-m", "bench.distributed.memory_probe", "run", *settings]
            print(f"  torchrun --nproc_per_node 2 -m ft run {' '.join(settings[:1])} ...", flush=True)
            timed = run_timed(command, env=env, cwd=Path(__file__).resolve().parents[2])
            ranks = [json.loads(p.read_text()) for p in sorted(probe.glob("rank*.json"))]
            if len(ranks) != 2:
                raise SystemExit(f"{mode}: the probe did not report from both ranks (see the output above)")
            results[mode] = {"tensor_mb": max(r["tensor_mb"] for r in ranks), "peak_rss_mb": max(r["peak_rss_mb"] for r in ranks),
                             "wall_s": timed["wall_s"]}
    baseline = args.modes[0]
    summaries = {mode: {k: {"median": v, "min": v, "max": v, "n": 1, "spread": 0.0} for k, v in values.items()}
                 for mode, values in results.items()}
    print_table(f"memory per rank, 2 ranks, full fine-tune + AdamW ({args.model}; baseline: {baseline})", summaries, baseline,
                [("tensor_mb", "params+grads+optimizer MB"), ("peak_rss_mb", "peak RSS MB"), ("wall_s", "wall s")])
    headline = [(f"{mode} / {baseline}: params+grads+optimizer per rank",
                 f"{results[mode]['tensor_mb']:.0f} / {results[baseline]['tensor_mb']:.0f} MB = "
                 f"{results[mode]['tensor_mb'] / results[baseline]['tensor_mb']:.2f}x (ideal 0.50x)")
                for mode in args.modes[1:]]
    headline += [(f"{mode} / {baseline}: peak RSS per rank",
                  f"{results[mode]['peak_rss_mb'] / results[baseline]['peak_rss_mb']:.2f}x") for mode in args.modes[1:]]
    record("distributed", args, {"modes": args.modes, "steps": args.steps, "sequence_len": args.sequence_len,
                                 "model": args.model, "ranks": 2, "optimizer": "adamw_torch"},
           summaries, baseline, headline, load_before, {"ft": versions()}, device=args.device)
    return 0


if __name__ == "__main__":
    sys.exit(main())
