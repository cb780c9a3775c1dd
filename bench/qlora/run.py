"""QLoRA vs LoRA on CPU: seconds per training step and weight memory, measured in the same process.

    .venv/bin/python bench/qlora/run.py [--model builtin:smollm2-135m-instruct] [--steps 5]

Both sides use the same LoRA (r=16, all linear layers), batch (2 x 256 tokens), optimizer and thread
count; QLoRA's base is 4-bit nf4 with double quantisation, computing in float32, exactly what
``adapter=qlora`` loads. Prints the QLoRA / LoRA ratios and appends a record to
``bench/results/qlora.jsonl``; no timing is asserted anywhere.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench._harness import add_common_args, load_average, record, versions  # noqa: E402


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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_args(parser, repeat=1, warmup=0)
    parser.add_argument("--model", default="builtin:smollm2-135m-instruct")
    parser.add_argument("--steps", type=int, default=5, help="timed steps per side, after one warm-up step")
    parser.add_argument("--seq", type=int, default=256)
    args = parser.parse_args(argv)
    logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)
    from transformers import AutoConfig

    from ft_model.api import resolve_model_path

    load_before = load_average()
    path = resolve_model_path(args.model)
    vocab = AutoConfig.from_pretrained(path).vocab_size
    torch.manual_seed(0)
    batch = {"input_ids": torch.randint(0, vocab, (2, args.seq)), "attention_mask": torch.ones(2, args.seq, dtype=torch.long)}
    summaries: dict[str, dict[str, dict[str, float]]] = {}
    for name, quantized in (("lora", False), ("qlora", True)):
        model, weights_mb = load(path, quantized)
        times = step_times(model, batch, args.steps)
        spread = (max(times) - min(times)) / statistics.median(times)
        summaries[name] = {"step_s": {"median": statistics.median(times), "spread": spread},
                           "weights_mb": {"median": weights_mb, "spread": 0.0}}
        del model
    lora, qlora = summaries["lora"], summaries["qlora"]
    step_ratio = qlora["step_s"]["median"] / lora["step_s"]["median"]
    memory_ratio = qlora["weights_mb"]["median"] / lora["weights_mb"]["median"]
    print(f"{args.model}, batch 2 x {args.seq}, LoRA r=16 all-linear, {args.steps} steps, {torch.get_num_threads()} threads")
    headline = [("model", f"{args.model}, batch 2 x {args.seq}, {torch.get_num_threads()} threads"),
                ("s/step, LoRA / QLoRA", f"{lora['step_s']['median']:.3f} / {qlora['step_s']['median']:.3f}"),
                ("QLoRA / LoRA, step time", f"{step_ratio:.2f}x"),
                ("base weights in memory, LoRA -> QLoRA", f"{lora['weights_mb']['median']:.1f} -> "
                                                          f"{qlora['weights_mb']['median']:.1f} MiB ({memory_ratio:.2f}x)")]
    record("qlora", args, {"model": args.model, "steps": args.steps, "seq": args.seq, "batch": 2, "lora_r": 16},
           summaries, "lora", headline, load_before, {"ft": versions(packages=("ft", "torch", "transformers", "peft", "bitsandbytes"))})
    return 0


if __name__ == "__main__":
    sys.exit(main())
