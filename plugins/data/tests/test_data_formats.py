"""Exact label spans of every builtin format, on real rows (ft_testing.TEST_DATA) with SmolLM2's tokenizer.

Each test builds the expected trained text from the row itself (the response, each assistant turn and
its end-of-turn token...) and compares it with what the labels actually train, token run by token run.
"""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path

import pytest

from ft.errors import DataError
from ft_data.api import IGNORE_INDEX, FormatOptions, format_alpaca, format_chat_template
from ft_data.formats import (
    ALPACA_PROMPT_NO_INPUT,
    ALPACA_PROMPT_WITH_INPUT,
    format_completion,
    format_input_output,
    format_pretokenized,
    format_template,
)

_HH_TURN = re.compile(r"\n\n(Human|Assistant):[ ]?")


def parse_hh_dialogue(text: str) -> list[dict[str, str]]:
    """HH-RLHF text (``\\n\\nHuman: ...\\n\\nAssistant: ...``) as messages: test data for the chat formats."""
    pieces = _HH_TURN.split(text)
    return [{"role": "user" if speaker == "Human" else "assistant", "content": content.strip()}
            for speaker, content in zip(pieces[1::2], pieces[2::2])]

EOS = "<|im_end|>"
SYSTEM_DEFAULT = "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"


@pytest.fixture(scope="module")
def tok():
    from transformers import AutoTokenizer

    from ft_model.smollm2 import ensure_smollm2

    return AutoTokenizer.from_pretrained(ensure_smollm2())


@pytest.fixture(scope="module")
def toolformer(test_data: Path) -> list[dict]:
    return json.loads((test_data / "gpteacher" / "toolformer.json").read_text())


@pytest.fixture(scope="module")
def gsm8k(test_data: Path) -> list[dict]:
    with (test_data / "gsm8k" / "train.jsonl").open() as handle:
        return [json.loads(line) for _, line in zip(range(50), handle)]


@pytest.fixture(scope="module")
def hh_chats(test_data: Path) -> list[list[dict]]:
    """HH-RLHF chosen dialogues converted to messages, those with at least two assistant turns."""
    chats = []
    with gzip.open(test_data / "hh-rlhf" / "harmless-base-test.jsonl.gz", "rt") as handle:
        for line in handle:
            messages = parse_hh_dialogue(json.loads(line)["chosen"])
            if sum(m["role"] == "assistant" for m in messages) >= 2 and all(m["content"] for m in messages):
                chats.append(messages)
            if len(chats) == 5:
                break
    return chats


def trained_runs(tok, example: dict) -> list[str]:
    """The decoded text of each maximal run of trained tokens."""
    runs, current = [], []
    for token, label in zip(example["input_ids"], example["labels"]):
        assert label in (IGNORE_INDEX, token), "a label is neither masked nor the input token"
        if label == IGNORE_INDEX:
            if current:
                runs.append(tok.decode(current))
            current = []
        else:
            current.append(token)
    if current:
        runs.append(tok.decode(current))
    return runs


def test_alpaca_with_input_masks_the_stanford_prompt_and_trains_output_and_eos(tok, toolformer):
    rows = [r for r in toolformer if r["input"]][:5]
    for row in rows:
        example = format_alpaca(row, tok, FormatOptions())
        prompt = ALPACA_PROMPT_WITH_INPUT.format(instruction=row["instruction"], input=row["input"])
        n_prompt = len(tok(prompt)["input_ids"])
        assert example["input_ids"][:n_prompt] == tok(prompt)["input_ids"]
        assert example["labels"][:n_prompt] == [IGNORE_INDEX] * n_prompt
        assert example["input_ids"][n_prompt:] == tok(row["output"])["input_ids"] + [tok.eos_token_id]
        assert example["labels"][n_prompt:] == example["input_ids"][n_prompt:]
        assert trained_runs(tok, example) == [row["output"] + EOS]


def test_alpaca_without_input_uses_the_no_input_prompt(tok, gsm8k):
    for row in gsm8k[:5]:
        example = format_alpaca({"instruction": row["question"], "output": row["answer"]}, tok, FormatOptions())
        prompt = ALPACA_PROMPT_NO_INPUT.format(instruction=row["question"])
        assert tok.decode(example["input_ids"]).startswith(prompt)
        assert "### Input:" not in tok.decode(example["input_ids"])
        assert trained_runs(tok, example) == [row["answer"] + EOS]


def test_alpaca_train_on_inputs_trains_every_token(tok, toolformer):
    example = format_alpaca(toolformer[0], tok, FormatOptions(train_on_inputs=True))
    assert example["labels"] == example["input_ids"]


def chat_expectation(messages: list[dict], trained_roles: set[str], mode: str) -> list[str]:
    """Expected trained runs for SmolLM2's ChatML template (content then <|im_end|> per turn)."""
    runs: list[str] = []
    trained_turns = [i for i, m in enumerate(messages) if m["role"] in trained_roles]
    for index, message in enumerate(messages):
        trained = index in trained_turns
        eos = mode == "all" or (mode == "turn" and trained) or (mode == "last" and index == trained_turns[-1])
        if trained:
            runs.append(message["content"] + (EOS if eos else ""))
        elif eos:
            runs.append(EOS)
    return runs


@pytest.mark.parametrize("mode", ["turn", "all", "last", "none"])
def test_multi_turn_chat_masks_every_turn_exactly_for_each_train_on_eos(tok, hh_chats, mode):
    for messages in hh_chats:
        example = format_chat_template({"messages": messages}, tok, FormatOptions(train_on_eos=mode))
        assert tok.decode(example["input_ids"]) == tok.apply_chat_template(messages, tokenize=False)
        assert trained_runs(tok, example) == chat_expectation(messages, {"assistant"}, mode)
        # The template's scaffolding (default system prompt, role headers) is never trained.
        text = tok.decode([t for t, label in zip(example["input_ids"], example["labels"]) if label != IGNORE_INDEX])
        assert "<|im_start|>" not in text and "SmolLM" not in text


def test_roles_to_train_with_two_roles_trains_user_and_assistant_turns(tok, hh_chats):
    options = FormatOptions(roles_to_train=["assistant", "user"])
    for messages in hh_chats:
        example = format_chat_template({"messages": messages}, tok, options)
        assert trained_runs(tok, example) == [m["content"] + EOS for m in messages]


def test_sharegpt_rows_are_mapped_to_user_and_assistant(tok, hh_chats):
    messages = hh_chats[0]
    sharegpt = {"conversations": [{"from": {"user": "human", "assistant": "gpt"}[m["role"]], "value": m["content"]}
                                  for m in messages]}
    options = FormatOptions(field_messages="conversations", message_property_mappings={"role": "from", "content": "value"})
    mapped = format_chat_template(sharegpt, tok, options)
    plain = format_chat_template({"messages": messages}, tok, FormatOptions())
    assert mapped == plain
    assert trained_runs(tok, mapped) == chat_expectation(messages, {"assistant"}, "turn")


def test_per_turn_train_flag_overrides_the_role(tok, hh_chats):
    messages = [dict(m) for m in hh_chats[0]]
    first_assistant = next(i for i, m in enumerate(messages) if m["role"] == "assistant")
    messages[first_assistant]["train"] = False
    messages[0]["train"] = True  # a user turn
    example = format_chat_template({"messages": messages}, tok, FormatOptions())
    expected = [messages[0]["content"] + EOS] + [m["content"] + EOS for i, m in enumerate(messages)
                                                  if m["role"] == "assistant" and i != first_assistant]
    assert trained_runs(tok, example) == expected


def test_a_template_that_trims_content_is_masked_by_the_diff_path(tok, hh_chats):
    trimming = ("{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] | trim "
                "+ '<|im_end|>\\n' }}{% endfor %}")
    messages = [dict(m) for m in hh_chats[0]]
    messages[1]["content"] = "  " + messages[1]["content"] + "  \n"
    example = format_chat_template({"messages": messages}, tok, FormatOptions(chat_template=trimming))
    expected = [m["content"].strip() + EOS for m in messages if m["role"] == "assistant"]
    assert trained_runs(tok, example) == expected


def test_completion_splits_long_documents_into_chunks_and_trains_all(tok, gsm8k):
    text = "\n".join(r["question"] + " " + r["answer"] for r in gsm8k[:5])
    chunks = format_completion({"text": text}, tok, FormatOptions(sequence_len=64))
    full = tok(text)["input_ids"] + [tok.eos_token_id]
    assert len(chunks) == -(-len(full) // 64) > 1
    assert [t for c in chunks for t in c["input_ids"]] == full
    assert all(len(c["input_ids"]) <= 64 and c["labels"] == c["input_ids"] for c in chunks)


def test_input_output_segments_train_only_labelled_segments(tok, gsm8k):
    row = gsm8k[0]
    segments = [{"text": f"Question: {row['question']}\n", "label": False},
                {"text": f"Answer: {row['answer']}", "label": True},
                {"text": "\n(end)", "label": False}]
    example = format_input_output({"segments": segments}, tok, FormatOptions())
    assert tok.decode(example["input_ids"]) == "".join(s["text"] for s in segments)
    assert trained_runs(tok, example) == [f"Answer: {row['answer']}"]


def test_user_template_trains_from_the_marker(tok, gsm8k):
    options = FormatOptions(template="Q: {question}\nA: {train}{answer}")
    example = format_template(gsm8k[0], tok, options)
    assert tok.decode(example["input_ids"]) == f"Q: {gsm8k[0]['question']}\nA: {gsm8k[0]['answer']}{EOS}"
    assert trained_runs(tok, example) == [gsm8k[0]["answer"] + EOS]


def test_pretokenized_rows_pass_through_and_are_checked(tok):
    ids = tok("Hello there, general.")["input_ids"]
    labels = [IGNORE_INDEX] * 2 + ids[2:]
    assert format_pretokenized({"input_ids": ids, "labels": labels}, tok, FormatOptions()) == {"input_ids": ids, "labels": labels}
    assert format_pretokenized({"input_ids": ids}, tok, FormatOptions())["labels"] == ids
    with pytest.raises(DataError, match="'labels' has 2 entries but 'input_ids' has"):
        format_pretokenized({"input_ids": ids, "labels": [1, 2]}, tok, FormatOptions())
    with pytest.raises(DataError, match="outside the tokenizer's vocabulary"):
        format_pretokenized({"input_ids": [10**7]}, tok, FormatOptions())
