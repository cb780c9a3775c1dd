"""Benchmark: LoRA SFT throughput (tokens/s) and model FLOPs utilisation, ft against plain TRL.

    .venv/bin/python bench/lora-sft/run.py [--device cuda --model-config llama-1b] [--repeat 2] [--steps 20]

Both sides train the same random-initialised Llama-style model (``--model-config``: tiny by default on
CPU; ``llama-1b``, about 1.1 B parameters, on a GPU) with LoRA r=16 on every linear layer (ft's
defaults: alpha 32, dropout 0.05), on the same GSM8K rows as Alpaca (identical tokens: the baseline
tokenizes with the overhead benchmark's checked function), same batch, AdamW, cosine schedule, seed and
learning rate, each side a fresh process, rounds interleaved. ft runs as ``ft run +adapter=lora``; the
baseline is ``bench/_harness/trl_lora_sft.py`` (TRL's ``SFTTrainer`` with a ``peft.LoraConfig``).

Figures: mean step time after the warm-up steps; tokens/s = the trained rows' mean length x batch /
step time (padding not counted); MFU = model FLOPs per token x tokens/s / the GPU's peak dense bf16
FLOP/s (``--peak-tflops``, else looked up from the GPU's name), where a LoRA step's FLOPs per token are
4 x the frozen parameters (forward, and the backward pass through them; their weights get no
gradient) + 6 x the adapter's parameters; attention's own FLOPs are left out (as in the usual 6N
convention), so MFU is slightly understated. On CPU there is no peak figure and no MFU.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench._harness import (REPO, add_common_args, add_device_args, add_workload_args, child_env, interleave,  # noqa: E402
                            load_average, mean_step, print_table, record, require_device, run_timed, summarize,
                            versions)

LR = 2e-4
#: Peak dense bf16 tensor FLOP/s (no sparsity) by GPU name, from the vendors' data sheets.
PEAK_TFLOPS = {"H200": 989.0, "H100 NVL": 835.0, "H100 PCIe": 756.0, "H100": 989.0, "A100": 312.0, "L40S": 362.0,
               "A10G": 70.0, "L4": 121.0}


def peak_tflops(gpu_name: str) -> float | None:
    """The peak of the first table entry whose name appears in ``gpu_name`` (longest names first)."""
    for name in sorted(PEAK_TFLOPS, key=len, reverse=True):
        if name in gpu_name:
            return PEAK_TFLOPS[name]
    return None


def lora_parameters(model_dir: Path) -> tuple[int, int]:
    """(frozen base parameters, LoRA parameters) of ft's default LoRA on this model, counted on the meta device."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoConfig, AutoModelForCausalLM

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(model_dir))
        peft_model = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, target_modules="all-linear",
                                                      task_type="CAUSAL_LM"))
    trainable, total = peft_model.get_nb_trainable_parameters()
    return total - trainable, trainable


def mean_tokens(model_dir: Path, rows: Path, sequence_len: int) -> float:
    from transformers import AutoTokenizer

    from bench._harness.hf_sft import tokenize

    examples = tokenize([json.loads(line) for line in rows.open()], AutoTokenizer.from_pretrained(model_dir), sequence_len)
    return sum(len(e["input_ids"]) for e in examples) / max(len(examples), 1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_args(parser, repeat=2, warmup=1)
    add_device_args(parser)
    add_workload_args(parser, steps=20, steps_help="timed steps per run",
                      warmup_steps_help="steps run first in each process and not timed")
    parser.add_argument("--peak-tflops", type=float, help="the GPU's peak dense bf16 TFLOP/s (default: by its name)")
    parser.add_argument("--smoke", action="store_true", help="one round of 2 steps per side, not recorded (a start-up check)")
    args = parser.parse_args(argv)
    if args.smoke:
        args.repeat, args.warmup, args.steps, args.warmup_steps, args.no_record = 1, 0, 1, 0, True
    args.total_steps = args.steps + args.warmup_steps + 1
    precision = args.precision or ("bf16" if args.device == "cuda" else "fp32")
    require_device(args.device)

    from bench._harness import machine
    from bench._harness.sides import ft_train_command
    from bench._harness.workload import build_model, write_gsm8k_alpaca

    load_before = load_average()
    model = build_model(args.model_config)
    frozen, adapter = lora_parameters(model)
    env = child_env(args.device, args.threads)
    with tempfile.TemporaryDirectory(prefix="bench-lora-sft-") as scratch:
        root = Path(scratch)
        rows = write_gsm8k_alpaca(root / "gsm8k_alpaca.jsonl", args.total_steps * args.batch)
        tokens_per_step = mean_tokens(model, rows, args.sequence_len) * args.batch
        counter = iter(range(10**6))

        def side(cmd: list[str]) -> dict:
            run = run_timed(cmd, env=env, cwd=REPO, timing_file=True)
            step = mean_step(run, args.warmup_steps)
            out = {"step_s": step, "tokens_per_s": tokens_per_step / step, "wall_s": run["wall_s"],
                   "peak_rss_mb": run["peak_rss_mb"]}
            if "cuda_peak_mb" in run:
                out["cuda_peak_mb"] = run["cuda_peak_mb"]
            return out

        def ft_side() -> dict:
            return side(ft_train_command(
                model, rows, batch=args.batch, steps=args.total_steps, sequence_len=args.sequence_len,
                logging_steps=args.logging_steps, precision=precision, load_bf16=False,
                extra=("+adapter=lora", f"optim.lr={LR}", f"trainer.save_steps={args.total_steps + 1}",
                       f"run.root={root / f'runs{next(counter)}'}", "run.save_final_model=false", "run.plot=false")))

        def trl_side() -> dict:
            return side([sys.executable, "-m", "bench._harness.trl_lora_sft", "--model", str(model), "--rows", str(rows),
                         "--batch", str(args.batch), "--steps", str(args.total_steps), "--lr", str(LR),
                         "--sequence-len", str(args.sequence_len), "--logging-steps", str(args.logging_steps),
                         "--precision", precision, "--seed", "42"])

        print(f"lora-sft: {args.model_config} ({(frozen + adapter) / 1e6:.1f} M parameters, {adapter / 1e6:.2f} M LoRA), "
              f"batch {args.batch}, {tokens_per_step:.0f} tokens a step, {args.steps} timed steps after "
              f"{args.warmup_steps}, {args.device}, {precision}")
        results = interleave({"TRL SFTTrainer": trl_side, "ft": ft_side}, args.repeat, args.warmup)

    metrics = ["step_s", "tokens_per_s", "wall_s", "peak_rss_mb", "cuda_peak_mb"]
    summaries = summarize(results, metrics)
    print_table("LoRA SFT (median of rounds; ratio = ft / TRL)", summaries, "TRL SFTTrainer",
                [("step_s", "step (s)"), ("tokens_per_s", "tokens/s"), ("wall_s", "process wall (s)"),
                 ("peak_rss_mb", "peak memory (MiB)"), ("cuda_peak_mb", "CUDA peak (MiB)")])
    gpu = machine(args.device).get("gpu", "") if args.device == "cuda" else ""
    peak = args.peak_tflops or (peak_tflops(gpu) if gpu else None)
    flops_per_token = 4 * frozen + 6 * adapter

    def mfu(side: str) -> str:
        if not peak:
            return "- (no GPU peak figure)"
        return f"{100 * flops_per_token * summaries[side]['tokens_per_s']['median'] / (peak * 1e12):.1f}%"

    ratio = summaries["ft"]["tokens_per_s"]["median"] / summaries["TRL SFTTrainer"]["tokens_per_s"]["median"]
    headline = [
        ("model", f"{args.model_config} ({(frozen + adapter) / 1e6:.0f} M), LoRA r=16 all-linear, batch {args.batch}, "
                  f"{precision}, {args.device}"),
        ("tokens/s, TRL", f"{summaries['TRL SFTTrainer']['tokens_per_s']['median']:.0f}"),
        ("tokens/s, ft", f"{summaries['ft']['tokens_per_s']['median']:.0f}"),
        ("ft / TRL, tokens/s", f"{ratio:.3f}"),
        ("MFU, TRL / ft", f"{mfu('TRL SFTTrainer')} / {mfu('ft')}"),
    ]
    config = {"model_config": args.model_config, "frozen_parameters": frozen, "lora_parameters": adapter,
              "batch": args.batch, "steps": args.steps, "warmup_steps": args.warmup_steps,
              "sequence_len": args.sequence_len, "tokens_per_step": tokens_per_step, "precision": precision,
              "device": args.device, "threads": args.threads, "peak_tflops": peak, "flops_per_token": flops_per_token}
    record("lora-sft", args, config, summaries, "TRL SFTTrainer", headline, load_before, {"ft": versions()},
           device=args.device)
    return 0


if __name__ == "__main__":
    sys.exit(main())
