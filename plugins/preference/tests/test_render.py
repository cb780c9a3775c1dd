"""Rendering rows as text with the chat template, and the token limits."""

from __future__ import annotations

import pytest

from ft_preference.render import Renderer, apply_length_limits, keep_last_tokens, n_tokens


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_dir)


def test_messages_render_as_prompt_plus_completion_of_the_whole_conversation(tokenizer):
    prompt = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is 2 plus 3?"}]
    row = {"prompt": prompt, "chosen": [{"role": "assistant", "content": "5"}],
           "rejected": [{"role": "assistant", "content": "6"}]}
    text = Renderer(tokenizer).row(row)
    assert text["prompt"] == tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)
    assert text["prompt"].endswith("<|im_start|>assistant\n")
    # The completion ends exactly on the end-of-turn token, so TRL adds no second EOS.
    assert text["chosen"] == "5<|im_end|>" and text["rejected"] == "6<|im_end|>"
    full = tokenizer.apply_chat_template(prompt + row["chosen"], tokenize=False)
    assert full.startswith(text["prompt"] + text["chosen"])


def test_plain_text_stays_as_is_unless_text_as_chat(tokenizer):
    row = {"prompt": "Q: 2+3?\nA: ", "completion": "5", "label": True}
    assert Renderer(tokenizer).row(row) == row
    chat = Renderer(tokenizer, text_as_chat=True).row(row)
    assert chat["prompt"] == "<|im_start|>user\nQ: 2+3?\nA: <|im_end|>\n<|im_start|>assistant\n"
    assert chat["completion"] == "5<|im_end|>" and chat["label"] is True


def test_prompt_truncation_keeps_the_exact_end_of_the_prompt(tokenizer):
    text = "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May."
    cut = keep_last_tokens(tokenizer, text, 5)
    assert text.endswith(cut) and n_tokens(tokenizer, cut) == 5
    assert keep_last_tokens(tokenizer, text, 10_000) == text


def test_length_limits_cut_prompts_and_drop_long_completions_with_counts(tokenizer):
    rows = [{"prompt": "a long prompt " * 20, "chosen": "yes", "rejected": "no"},
            {"prompt": "short", "chosen": "a very long completion " * 20, "rejected": "no"}]
    stats: dict[str, int] = {}
    kept = apply_length_limits(rows, tokenizer, max_prompt_length=8, max_completion_length=16, stats=stats)
    assert len(kept) == 1 and n_tokens(tokenizer, kept[0]["prompt"]) == 8
    assert stats == {"truncated_prompt": 1, "dropped_too_long": 1}
