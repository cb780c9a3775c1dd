"""QLoRA vs LoRA on CPU: seconds per training step and weight memory, measured in the same process.

    python plugins/qlora/bench/bench_cpu.py [--model builtin:smollm2-135m-instruct] [--steps 5]

Both sides use the same LoRA (r=16, all linear layers), batch (2 x 256 tokens), optimizer and thread
count; QLoRA's base is 4-bit nf4 with double quantisation, computing in float32, exactly what
``adapter=qlora`` loads. Prints a table and the QLoRA / LoRA ratios; no timing is asserted anywhere.
"""

from __future__ import annotations

import argparse
import logging
import platform
import statistics
import time
from datetime import date

import torch


def load(model_path: str, quantized: bool):
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    kwargs = {"dtype": torch.float32}
    if quantized:
        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=torch.float32)
    model = AutoModelForCausalLM.from_pretrained(model_path, **kwargs)
    if quantized:
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    weights_mb = model.get_memory_footprint() / 2**20
    model = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0, target_modules="all-linear"))
    return model, weights_mb


def step_times(model, batch, steps: int) -> list[float]:
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    model.train()
    times = []
    for _ in range(steps + 1):  # the first step warms up and is not counted
        start = time.perf_counter()
        loss = model(**batch, labels=batch["input_ids"]).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        times.append(time.perf_counter() - start)
    return times[1:]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="builtin:smollm2-135m-instruct")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--seq", type=int, default=256)
    args = parser.parse_args()
    logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)
    from ft_model.api import resolve_model_path
    from transformers import AutoConfig

    path = resolve_model_path(args.model)
    vocab = AutoConfig.from_pretrained(path).vocab_size
    torch.manual_seed(0)
    batch = {"input_ids": torch.randint(0, vocab, (2, args.seq)), "attention_mask": torch.ones(2, args.seq, dtype=torch.long)}
    rows = {}
    for name, quantized in (("lora", False), ("qlora", True)):
        model, weights_mb = load(path, quantized)
        times = step_times(model, batch, args.steps)
        rows[name] = (statistics.median(times), weights_mb)
        del model
    print(f"{date.today()} | {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, "
          f"torch {torch.__version__} | {args.model}, batch 2 x {args.seq}, LoRA r=16 all-linear, {args.steps} steps")
    print("| adapter | s / step (median) | base weights in memory (MiB) |")
    print("|---|---|---|")
    for name, (seconds, mb) in rows.items():
        print(f"| {name} | {seconds:.3f} | {mb:.1f} |")
    (lora_s, lora_mb), (qlora_s, qlora_mb) = rows["lora"], rows["qlora"]
    print(f"qlora / lora: step time x{qlora_s / lora_s:.2f}, weight memory x{qlora_mb / lora_mb:.2f}")


if __name__ == "__main__":
    main()
