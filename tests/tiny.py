"""Tiny random models and a locally trained tokenizer, so tests run offline in seconds.

The tokenizer is a byte-level BPE trained with ``tokenizers`` on real text from ../shared/data
(GSM8K questions when present, a built-in paragraph otherwise), with ChatML special tokens and a
ChatML chat template like SmolLM2's.
"""

from __future__ import annotations

import json
from pathlib import Path

CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO.parent / "shared" / "data"

_FALLBACK_TEXT = (
    "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. "
    "How many clips did Natalia sell altogether in April and May? Weng earns 12 an hour for babysitting. "
    "Below is an instruction that describes a task. Write a response that appropriately completes the request. "
    "### Instruction: ### Input: ### Response: Sort the numbers in ascending order. The answer is 72."
)


def corpus() -> list[str]:
    lines: list[str] = [_FALLBACK_TEXT] * 20
    gsm8k = SHARED_DATA / "gsm8k" / "train.jsonl"
    if gsm8k.is_file():
        with gsm8k.open() as handle:
            for index, line in enumerate(handle):
                if index >= 1500:
                    break
                row = json.loads(line)
                lines += [row["question"], row["answer"]]
    return lines


def build_tokenizer(out_dir: Path, vocab_size: int = 600):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    special = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=special,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(corpus(), trainer=trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", bos_token="<|im_start|>",
                                   unk_token="<|endoftext|>", pad_token="<|endoftext|>")
    fast.chat_template = CHATML_TEMPLATE
    fast.save_pretrained(out_dir)
    return fast


def build_tiny_model(out_dir: Path, seed: int = 0) -> Path:
    """Save a tiny random Llama model and its tokenizer into ``out_dir``; return the folder."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    out_dir.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer(out_dir)
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=False,
    )
    LlamaForCausalLM(config).save_pretrained(out_dir, safe_serialization=True)
    return out_dir
