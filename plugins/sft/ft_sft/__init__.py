"""ft-sft: Supervised fine-tuning (method=sft) on transformers.Trainer: the next-token loss on trained tokens."""
