"""The baseline of bench/lora-sft: the same LoRA SFT run written directly with TRL's ``SFTTrainer`` and PEFT.

    python -m bench._harness.trl_lora_sft --model DIR --rows rows.jsonl --batch 8 --steps 30 ...

What a user writes with TRL and no framework: the rows tokenized exactly as ft tokenizes them (prompt
masked, answer and EOS trained; ``bench._harness.hf_sft.tokenize``), handed to ``SFTTrainer`` already
tokenized with a ``completion_mask`` (``completion_only_loss``), and a ``peft.LoraConfig`` with ft's
defaults (r 16, alpha 32, dropout 0.05, every linear layer but the head). Same optimizer, schedule,
batch, seed and logging interval as ft's run; the benchmark's :class:`StepTimer` is its only addition.
"""

from __future__ import annotations

import json
import sys
import tempfile


def main() -> int:
    from bench._harness.hf_sft import baseline_args

    args = baseline_args(__doc__.splitlines()[0], lr=2e-4)

    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer, set_seed
    from trl import SFTConfig, SFTTrainer

    from bench._harness.hf_sft import tokenize, training_kwargs
    from bench._harness.timing import StepTimer

    set_seed(args.seed)
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    rows = [json.loads(line) for line in open(args.rows) if line.strip()]
    examples = [{"input_ids": e["input_ids"], "completion_mask": [int(label != -100) for label in e["labels"]]}
                for e in tokenize(rows, tokenizer, args.sequence_len)]
    model = AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.float32, attn_implementation="sdpa")
    lora = LoraConfig(r=16, lora_alpha=32, lora_dropout=0.05, target_modules="all-linear", task_type="CAUSAL_LM")
    with tempfile.TemporaryDirectory(prefix="trl-lora-sft-") as out:
        config = SFTConfig(**training_kwargs(args, out), completion_only_loss=True, max_length=args.sequence_len,
                           packing=False, gradient_checkpointing=False)
        trainer = SFTTrainer(model=model, args=config, train_dataset=Dataset.from_list(examples),
                             processing_class=tokenizer, peft_config=lora, callbacks=[StepTimer()])
        trainer.train()
    return 0


if __name__ == "__main__":
    sys.exit(main())
