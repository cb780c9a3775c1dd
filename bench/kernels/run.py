"""Benchmark: the loss kernels (kernels=ft, Cut Cross Entropy, Liger) against the naive loss.

    .venv/bin/python bench/kernels/run.py                      # both parts, CPU
    .venv/bin/python bench/kernels/run.py --part loss          # loss forward + backward only (a few minutes)
    .venv/bin/python bench/kernels/run.py --device cuda        # adds ft's Triton path, CCE's and Liger's kernels

Part ``loss``: forward + backward of the token loss at SmolLM2-135M's head (hidden 576, vocabulary 49,152)
for ``--tokens`` (8,192) tokens, fp32 (bf16 on cuda), every token trained, head weight and hidden states
both trained. Sides, each in its own process, interleaved: ``naive`` (``F.cross_entropy((h @ W.T).float())``,
the baseline), ``ft`` (``ft_kernels.linear_cross_entropy``, torch path; ``ft_recompute``: its
``recompute=True`` variant), ``cce_torch_compile`` (Cut Cross
Entropy's torch_compile path, what ``kernels=cce`` runs without a GPU); on cuda also ``ft_triton``, ``cce``
(its Triton kernels) and ``liger``. Figures: peak extra memory (above the inputs, after a warm-up call:
peak resident set on the CPU, peak allocated on the GPU) and the median time of ``--reps`` calls.
Targets (CPU): ft's peak extra memory at most 25% of naive's and no more than CCE's; time within 1.3x.

Part ``step``: an end-to-end ``ft run`` step of SmolLM2-135M-Instruct (real weights) at sequence length
2,048 (GSM8K rows packed by multipack, one pack a step), with and without ``kernels=ft``: peak memory of
the process and mean step time after the first step.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench._harness import (add_common_args, add_device_args, child_env, interleave, load_average,  # noqa: E402
                            mean_step, print_table, record, require_device, run_timed, summarize, versions)

HIDDEN, VOCAB = 576, 49_152
SMOLLM2 = "builtin:smollm2-135m-instruct"


# -- one side of the loss part, in its own process ------------------------------------------------------------


def _status_mb(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


def _reset_peak_rss() -> None:
    """Reset the kernel's peak-RSS mark (VmHWM) of this process (Linux: clear_refs 5)."""
    Path("/proc/self/clear_refs").write_text("5")


def loss_function(side: str):
    import torch.nn.functional as F

    if side == "naive":
        return lambda h, w, t: F.cross_entropy((h @ w.T).float(), t, reduction="sum")
    if side in ("ft", "ft_recompute", "ft_triton"):
        from ft_kernels import linear_cross_entropy

        backend = "triton" if side == "ft_triton" else "torch"
        return lambda h, w, t: linear_cross_entropy(h, w, t, backend=backend, recompute=side == "ft_recompute")
    if side in ("cce", "cce_torch_compile"):
        from cut_cross_entropy import linear_cross_entropy as cce

        impl = "cce" if side == "cce" else "torch_compile"
        return lambda h, w, t: cce(h, w, t, reduction="sum", impl=impl)
    if side == "liger":
        from liger_kernel.transformers.functional import liger_fused_linear_cross_entropy

        return lambda h, w, t: liger_fused_linear_cross_entropy(h, w, t, reduction="sum")
    raise SystemExit(f"unknown side {side!r}")


def worker(side: str, tokens: int, reps: int, device: str) -> dict[str, float]:
    import torch

    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    generator = torch.Generator().manual_seed(0)
    hidden = (torch.randn(tokens, HIDDEN, generator=generator) * 0.5).to(device, dtype).requires_grad_()
    weight = (torch.randn(VOCAB, HIDDEN, generator=generator) * 0.05).to(device, dtype).requires_grad_()
    targets = torch.randint(0, VOCAB, (tokens,), generator=generator).to(device)
    fn = loss_function(side)

    def call() -> None:
        hidden.grad = weight.grad = None
        fn(hidden, weight, targets).backward()
        if device == "cuda":
            torch.cuda.synchronize()

    call()  # warm-up: compiles, autotunes, first-touch allocations
    hidden.grad = weight.grad = None
    gc.collect()
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated() / 2**20
    else:
        _reset_peak_rss()
        base = _status_mb("VmRSS")
    times = []
    for _ in range(reps):
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    peak = torch.cuda.max_memory_allocated() / 2**20 if device == "cuda" else _status_mb("VmHWM")
    times.sort()
    return {"peak_extra_mb": peak - base, "time_s": times[len(times) // 2]}


def loss_part(args: argparse.Namespace) -> tuple[dict, list[tuple[str, str]]]:
    sides = ["naive", "ft", "ft_recompute", "cce_torch_compile"] + (["ft_triton", "cce", "liger"] if args.device == "cuda" else [])
    env = child_env(args.device, args.threads, MALLOC_MMAP_THRESHOLD_="65536")  # freed tensors leave the RSS

    def side_runner(name: str):
        def run() -> dict[str, float]:
            with tempfile.TemporaryDirectory(prefix="ft-bench-kernels-") as scratch:
                out = Path(scratch) / "result.json"
                run_timed([sys.executable, __file__, "--worker", name, "--tokens", str(args.tokens), "--reps",
                           str(args.reps), "--device", args.device, "--out", str(out)], env=env)
                return json.loads(out.read_text())
        return run

    print(f"loss forward + backward, {args.tokens} tokens, hidden {HIDDEN}, vocabulary {VOCAB}:", flush=True)
    results = interleave({name: side_runner(name) for name in sides}, args.repeat, args.warmup)
    summaries = summarize(results, ["peak_extra_mb", "time_s"])
    print_table("loss forward + backward (ratios to naive)", summaries, "naive",
                [("peak_extra_mb", "peak extra MB"), ("time_s", "time s")])
    med = {side: {m: s["median"] for m, s in values.items()} for side, values in summaries.items()}
    naive, ft, cce = med["naive"], med["ft"], med["cce_torch_compile"]
    headline = [
        ("loss: peak extra memory ft / naive (target <= 0.25)",
         f"{ft['peak_extra_mb'] / naive['peak_extra_mb']:.3f} ({ft['peak_extra_mb']:.0f} vs {naive['peak_extra_mb']:.0f} MB)"),
        ("loss: peak extra memory ft / CCE torch_compile (target <= 1)",
         f"{ft['peak_extra_mb'] / cce['peak_extra_mb']:.3f} ({cce['peak_extra_mb']:.0f} MB)"),
        ("loss: time ft / naive (target <= 1.3)",
         f"{ft['time_s'] / naive['time_s']:.3f} ({ft['time_s']:.2f} vs {naive['time_s']:.2f} s; CCE "
         f"{cce['time_s']:.2f} s)"),
    ]
    if args.device == "cuda":
        for side in ("ft_triton", "cce", "liger"):
            headline.append((f"loss (GPU): {side} peak extra MB / time ms",
                             f"{med[side]['peak_extra_mb']:.0f} / {1000 * med[side]['time_s']:.2f}"))
    return summaries, headline


# -- the end-to-end step part -----------------------------------------------------------------------------------


def step_part(args: argparse.Namespace) -> tuple[dict, list[tuple[str, str]]]:
    from bench._harness.workload import write_gsm8k_alpaca

    env = child_env(args.device, args.threads)
    precision = "bf16" if args.device == "cuda" else "fp32"
    with tempfile.TemporaryDirectory(prefix="ft-bench-kernels-step-") as scratch:
        rows = write_gsm8k_alpaca(Path(scratch) / "gsm8k.jsonl", 400)

        def side_runner(name: str, extra: list[str]):
            def run() -> dict[str, float]:
                root = Path(tempfile.mkdtemp(dir=scratch))
                command = [sys.executable, "-m", "bench._harness.ft_launch", "run", f"model.name_or_path={SMOLLM2}",
                           "data=alpaca", f"data.path={rows}", "data.sequence_len=2048", "+packing=multipack",
                           "trainer.micro_batch_size=1", f"trainer.max_steps={args.steps}", "trainer.logging_steps=1",
                           f"trainer.precision={precision}", "run.save_final_model=false", "run.plot=false",
                           "trainer.save_every_minutes=null", f"run.root={root}", *extra]
                result = run_timed(command, env={**env, "FT_CACHE_DIR": str(Path(scratch) / "cache")}, timing_file=True)
                return {"step_s": mean_step(result, 1), "peak_rss_mb": result["peak_process_rss_mb"],
                        **({"cuda_peak_mb": result["cuda_peak_mb"]} if "cuda_peak_mb" in result else {})}
            return run

        print(f"\nSmolLM2-135M SFT step at sequence length 2048, {args.steps} steps a run:", flush=True)
        results = interleave({"plain": side_runner("plain", []), "kernels=ft": side_runner("ft", ["+kernels=ft"])},
                             args.step_repeat, 0)
    metrics = ["step_s", "peak_rss_mb"] + (["cuda_peak_mb"] if args.device == "cuda" else [])
    summaries = summarize(results, metrics)
    print_table("SFT step, SmolLM2-135M, 2,048 tokens (ratios to plain)", summaries, "plain",
                [("step_s", "step s"), ("peak_rss_mb", "peak RSS MB"), ("cuda_peak_mb", "GPU peak MB")])
    plain, fused = summaries["plain"], summaries["kernels=ft"]
    memory = "cuda_peak_mb" if args.device == "cuda" else "peak_rss_mb"
    headline = [
        ("SFT step at 2,048 tokens: peak memory kernels=ft / plain",
         f"{fused[memory]['median'] / plain[memory]['median']:.3f} ({fused[memory]['median']:.0f} vs "
         f"{plain[memory]['median']:.0f} MB)"),
        ("SFT step at 2,048 tokens: step time kernels=ft / plain",
         f"{fused['step_s']['median'] / plain['step_s']['median']:.3f} ({fused['step_s']['median']:.2f} vs "
         f"{plain['step_s']['median']:.2f} s)"),
    ]
    return {f"step:{k}": v for k, v in summaries.items()}, headline


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_args(parser, repeat=3, warmup=0)
    add_device_args(parser)
    parser.add_argument("--part", choices=("loss", "step", "both"), default="both")
    parser.add_argument("--tokens", type=int, default=8192, help="tokens of the loss part (default 8192)")
    parser.add_argument("--reps", type=int, default=3, help="timed calls per loss process (median; default 3)")
    parser.add_argument("--steps", type=int, default=4, help="optimizer steps per step-part run (default 4)")
    parser.add_argument("--step-repeat", type=int, default=1, help="rounds of the step part (default 1)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        args.out.write_text(json.dumps(worker(args.worker, args.tokens, args.reps, args.device)))
        return 0
    require_device(args.device)
    load_before = load_average()
    summaries: dict = {}
    headline: list[tuple[str, str]] = []
    if args.part in ("loss", "both"):
        found, lines = loss_part(args)
        summaries.update(found)
        headline += lines
    if args.part in ("step", "both"):
        found, lines = step_part(args)
        summaries.update(found)
        headline += lines
    baseline = "naive" if "naive" in summaries else "step:plain"
    if args.part == "step":
        args.repeat = args.step_repeat  # the record's rounds are the step part's
    record("kernels", args, {"part": args.part, "tokens": args.tokens, "hidden": HIDDEN, "vocab": VOCAB,
                             "reps": args.reps, "steps": args.steps, "threads": args.threads},
           summaries, baseline, headline, load_before,
           {"ft": versions(packages=("ft", "torch", "transformers", "triton", "cut-cross-entropy", "liger-kernel"))},
           device=args.device)
    return 0


if __name__ == "__main__":
    sys.exit(main())
