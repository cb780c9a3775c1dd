"""Preference rows: shape detection, HH-RLHF and GSM8K conversion, malformed rows, prompt split."""

from __future__ import annotations

import gzip
import json

import pytest

from ft.errors import DataError
from ft_preference.loader import prompt_key, split_by_prompt  # the one held-out split of preference rows
from ft_preference.rows import (
    clean_gsm8k_solution,
    convert_rows,
    detect_format,
    dialogue_to_pair,
    gsm8k_to_pairs,
    gsm8k_to_unpaired,
    pairs_to_unpaired,
)


def hh_rows(test_data, n=50):
    with gzip.open(test_data / "hh-rlhf" / "harmless-base-test.jsonl.gz", "rt", encoding="utf-8") as handle:
        return [json.loads(line) for _, line in zip(range(n), handle)]


def gsm8k_rows(test_data, n=40):
    with open(test_data / "gsm8k" / "example_model_solutions.jsonl", encoding="utf-8") as handle:
        return [json.loads(line) for _, line in zip(range(n), handle)]


def test_shapes_are_detected_from_their_fields(test_data):
    assert detect_format({"prompt": "p", "chosen": "a", "rejected": "b"}) == "paired"
    assert detect_format({"prompt": "p", "completion": "a", "label": True}) == "unpaired"
    assert detect_format(hh_rows(test_data, 1)[0]) == "dialogue"
    assert detect_format(gsm8k_rows(test_data, 1)[0]) == "gsm8k"
    with pytest.raises(DataError, match="cannot tell the preference format.*data.format"):
        detect_format({"instruction": "x", "output": "y"})


def test_hh_dialogue_shared_prefix_is_the_prompt_up_to_the_last_shared_assistant_turn(test_data):
    for row in hh_rows(test_data):
        pair = dialogue_to_pair(row)
        assert pair["prompt"].endswith("\n\nAssistant:")
        assert pair["prompt"] + pair["chosen"] == row["chosen"]
        assert pair["prompt"] + pair["rejected"] == row["rejected"]
        assert "\n\nAssistant:" not in pair["chosen"].split("\n\nHuman:")[0]


def test_hh_replies_starting_with_the_same_words_keep_them_in_the_completion():
    row = {"chosen": "\n\nHuman: Hi\n\nAssistant: I think so, yes.", "rejected": "\n\nHuman: Hi\n\nAssistant: I think not."}
    assert dialogue_to_pair(row) == {"prompt": "\n\nHuman: Hi\n\nAssistant:", "chosen": " I think so, yes.",
                                     "rejected": " I think not."}


def test_hh_dialogue_as_messages_gives_user_and_assistant_turns(test_data):
    row = hh_rows(test_data, 1)[0]
    pair = dialogue_to_pair(row, style="messages")
    assert [m["role"] for m in pair["prompt"]] == ["user", "assistant", "user", "assistant", "user"]
    assert pair["prompt"][0]["content"] == "what are some pranks with a pen i can do?"
    assert pair["chosen"] == [{"role": "assistant", "content": row["chosen"].rsplit("\n\nAssistant: ", 1)[1]}]
    assert pair["rejected"][0]["content"].startswith("There are lots of funny things")


def test_message_dialogues_split_before_the_first_differing_assistant_turn():
    user = {"role": "user", "content": "2+2?"}
    row = {"chosen": [user, {"role": "assistant", "content": "4"}],
           "rejected": [user, {"role": "assistant", "content": "5"}]}
    assert dialogue_to_pair(row) == {"prompt": [user], "chosen": [{"role": "assistant", "content": "4"}],
                                     "rejected": [{"role": "assistant", "content": "5"}]}


def test_gsm8k_pairs_put_right_solutions_against_wrong_ones(test_data):
    rows = gsm8k_rows(test_data)
    total = 0
    for row in rows:
        right = {clean_gsm8k_solution(v["solution"]) for v in row.values() if isinstance(v, dict) and v["is_correct"]}
        right.add(clean_gsm8k_solution(row["ground_truth"]))
        wrong = {clean_gsm8k_solution(v["solution"]) for v in row.values() if isinstance(v, dict) and not v["is_correct"]}
        pairs = gsm8k_to_pairs(row, max_pairs=3)
        assert len(pairs) == min(3, len(right) * len(wrong - right))
        for pair in pairs:
            assert pair["prompt"] == [{"role": "user", "content": row["question"].strip()}]
            assert pair["chosen"][0]["content"] in right
            assert pair["rejected"][0]["content"] in wrong
            assert "<<" not in pair["chosen"][0]["content"]
        total += len(pairs)
    assert total > len(rows)


def test_gsm8k_pairs_use_every_wrong_solution_before_reusing_one():
    row = {"question": "q", "ground_truth": "A: 1",
           "m1": {"is_correct": False, "solution": "A: 2"}, "m2": {"is_correct": False, "solution": "A: 3"},
           "m3": {"is_correct": True, "solution": "so A: 1"}}
    pairs = gsm8k_to_pairs(row, max_pairs=2, style="text")
    assert [p["rejected"] for p in pairs] == ["A: 2", "A: 3"]
    assert [p["chosen"] for p in pairs] == ["A: 1", "so A: 1"]
    assert pairs[0]["prompt"] == "Question: q\nAnswer: "


def test_gsm8k_kto_rows_label_each_solution_by_correctness(test_data):
    row = gsm8k_rows(test_data, 1)[0]
    rows = gsm8k_to_unpaired(row)
    labels = {r["completion"][0]["content"]: r["label"] for r in rows}
    assert labels[clean_gsm8k_solution(row["ground_truth"])] is True
    for value in row.values():
        if isinstance(value, dict):
            assert labels[clean_gsm8k_solution(value["solution"])] is value["is_correct"]


def test_calculator_annotations_are_removed_unless_kept():
    text = "She has 16 - 3 = <<16-3=13>>13 eggs\nA: 13"
    assert clean_gsm8k_solution(text) == "She has 16 - 3 = 13 eggs\nA: 13"
    assert clean_gsm8k_solution(text, keep_calculator=True) == text


@pytest.mark.parametrize("row, reason, message", [
    ({"prompt": "p", "chosen": "same", "rejected": "same"}, "identical", "identical"),
    ({"prompt": "p", "chosen": "  ", "rejected": "b"}, "empty_completion", "'chosen' is empty"),
    ({"prompt": "p", "chosen": "a"}, "missing_field", "missing the field 'rejected'"),
    ({"prompt": "p", "chosen": 3, "rejected": "b"}, "bad_type", "must be text or a list of messages"),
])
def test_malformed_rows_are_an_error_with_the_row_number_or_a_counted_drop(row, reason, message):
    good = {"prompt": "p", "chosen": "a", "rejected": "b"}
    with pytest.raises(DataError, match=rf"pairs.jsonl row 2: .*{message}.*data.bad_rows=drop"):
        convert_rows([good, row], "paired", source="pairs.jsonl")
    converted = convert_rows([good, row, good], "paired", bad_rows="drop")
    assert converted.rows == [good, good]
    assert converted.stats[f"dropped_{reason}"] == 1
    assert converted.stats["rows_in"] == 3 and converted.stats["rows_out"] == 2


def test_kto_rows_are_checked_too():
    with pytest.raises(DataError, match="'label' must be true or false"):
        convert_rows([{"prompt": "p", "completion": "a", "label": "yes"}], "unpaired", "unpaired")
    with pytest.raises(DataError, match="'completion' is empty"):
        convert_rows([{"prompt": "p", "completion": "", "label": True}], "unpaired", "unpaired")


def test_unpaired_rows_for_a_pairwise_method_name_kto():
    with pytest.raises(DataError, match="use method=kto"):
        convert_rows([{"prompt": "p", "completion": "a", "label": True}], "auto", "paired")


def test_no_usable_rows_is_an_error_listing_what_was_dropped():
    with pytest.raises(DataError, match="no usable preference rows.*dropped_identical"):
        convert_rows([{"prompt": "p", "chosen": "a", "rejected": "a"}], "paired", bad_rows="drop")


def test_pairs_become_kto_rows_once_per_distinct_completion():
    pairs = [{"prompt": "p", "chosen": "good", "rejected": "bad1"}, {"prompt": "p", "chosen": "good", "rejected": "bad2"}]
    assert pairs_to_unpaired(pairs) == [
        {"prompt": "p", "completion": "good", "label": True},
        {"prompt": "p", "completion": "bad1", "label": False},
        {"prompt": "p", "completion": "bad2", "label": False},
    ]


def test_held_out_split_keeps_every_prompt_on_one_side(test_data):
    pairs = convert_rows(gsm8k_rows(test_data, 60), "gsm8k", "paired").rows
    train, evaluated = split_by_prompt(pairs, 0.2, seed=1)
    assert len(train) + len(evaluated) == len(pairs)
    train_prompts = {prompt_key(r) for r in train}
    eval_prompts = {prompt_key(r) for r in evaluated}
    assert not train_prompts & eval_prompts
    assert len(eval_prompts) == round(0.2 * len(train_prompts | eval_prompts))
    _, by_count = split_by_prompt(pairs, 5, seed=1)
    assert len({prompt_key(r) for r in by_count}) == 5
    with pytest.raises(DataError, match="leaving none to train on"):
        split_by_prompt(pairs, 10_000, seed=1)
