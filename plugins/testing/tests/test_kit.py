"""The kit's tiny model and tokenizer are what plugin tests rely on: ChatML, a template, loadable offline."""

from __future__ import annotations

from pathlib import Path


def test_the_tiny_model_and_its_tokenizer_load_offline_with_a_chatml_template(tiny_model_dir: Path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    text = tokenizer.apply_chat_template([{"role": "user", "content": "2+2?"}], tokenize=False, add_generation_prompt=True)
    assert text == "<|im_start|>user\n2+2?<|im_end|>\n<|im_start|>assistant\n"
    assert tokenizer.eos_token == "<|im_end|>" and model.config.vocab_size >= len(tokenizer)
    assert sum(p.numel() for p in model.parameters()) < 1_000_000  # tiny: tests stay in seconds
