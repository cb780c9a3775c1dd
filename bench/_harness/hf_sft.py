"""The baseline: the same SFT run written directly with ``transformers.Trainer``, no ft involved.

    python -m bench._harness.hf_sft --model DIR --rows rows.jsonl --batch 8 --steps 30 ...

What a user writes without a framework: tokenize Alpaca rows (prompt masked with -100, answer and
EOS trained, rows longer than the sequence length dropped), pad with ``DataCollatorForSeq2Seq``, and
train with ``Trainer`` using the same optimizer, schedule, batch, seed and logging interval as ft's
run. The benchmark's :class:`StepTimer` is its only addition.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile

PROMPT = ("Below is an instruction that describes a task. Write a response that appropriately completes "
          "the request.\n\n### Instruction:\n{instruction}\n\n### Response:\n")


def tokenize(rows: list[dict], tokenizer, sequence_len: int) -> list[dict]:
    examples = []
    for row in rows:
        prompt = tokenizer(PROMPT.format(instruction=row["instruction"]))["input_ids"]
        answer = tokenizer(row["output"], add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
        ids = prompt + answer
        if len(ids) > sequence_len:
            continue
        examples.append({"input_ids": ids, "labels": [-100] * len(prompt) + answer, "attention_mask": [1] * len(ids)})
    return examples


def baseline_args(description: str, lr: float) -> argparse.Namespace:
    """The command line every baseline script takes: the same workload the benchmark gives ft."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--model", required=True)
    parser.add_argument("--rows", required=True)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--lr", type=float, default=lr)
    parser.add_argument("--sequence-len", type=int, default=1024)
    parser.add_argument("--logging-steps", type=int, default=5)
    parser.add_argument("--precision", choices=("fp32", "bf16"), default="fp32")
    parser.add_argument("--seed", type=int, default=42)
    return parser.parse_args()


def training_kwargs(args: argparse.Namespace, output_dir: str) -> dict:
    """The ``TrainingArguments`` every baseline shares with ft's run: optimizer, schedule, batch, seed, logging."""
    import torch

    return dict(output_dir=output_dir, per_device_train_batch_size=args.batch, gradient_accumulation_steps=1,
                max_steps=args.steps, learning_rate=args.lr, weight_decay=0.0, adam_beta1=0.9, adam_beta2=0.999,
                adam_epsilon=1e-8, max_grad_norm=1.0, lr_scheduler_type="cosine", warmup_steps=0,
                optim="adamw_torch", logging_steps=args.logging_steps, logging_first_step=True,
                save_strategy="no", report_to="none", seed=args.seed, data_seed=args.seed,
                bf16=args.precision == "bf16", dataloader_num_workers=0,
                dataloader_pin_memory=torch.cuda.is_available())


def main() -> int:
    args = baseline_args(__doc__.splitlines()[0], lr=2e-5)

    import torch
    from datasets import Dataset
    from transformers import (AutoModelForCausalLM, AutoTokenizer, DataCollatorForSeq2Seq, Trainer,
                              TrainingArguments, set_seed)

    from bench._harness.timing import StepTimer

    set_seed(args.seed)
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    rows = [json.loads(line) for line in open(args.rows) if line.strip()]
    train = Dataset.from_list(tokenize(rows, tokenizer, args.sequence_len))
    model = AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.float32, attn_implementation="sdpa")
    with tempfile.TemporaryDirectory(prefix="hf-sft-") as out:
        training_args = TrainingArguments(**training_kwargs(args, out), remove_unused_columns=False)
        trainer = Trainer(model=model, args=training_args, train_dataset=train,
                          data_collator=DataCollatorForSeq2Seq(tokenizer, padding=True, label_pad_token_id=-100),
                          processing_class=tokenizer, callbacks=[StepTimer()])
        trainer.train()
    return 0


if __name__ == "__main__":
    sys.exit(main())
