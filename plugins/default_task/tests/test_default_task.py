"""The embedded default task: deterministic data, honest held-out split, correct answers, fair scoring.

No model is needed: ``score`` is exercised with a fake tokenizer and a fake model that answer from a
lookup table, which checks the batching, left padding and decoding around ``generate``.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

from ft_default_task import task


def _numbers(text: str) -> list[int]:
    return [int(n) for n in re.findall(r"\d+", text)]


def _prompt(row: dict) -> str:
    return row["messages"][0]["content"]


def _answer(row: dict) -> str:
    return row["messages"][1]["content"]


def test_rows_are_deterministic_for_a_seed_and_differ_across_seeds():
    assert task.generate_rows(50, seed=7) == task.generate_rows(50, seed=7)
    assert task.generate_rows(50, seed=7) != task.generate_rows(50, seed=8)
    assert task.generate_rows(20, seed=7) == task.generate_rows(50, seed=7)[:20]


def test_rows_are_chat_rows_with_correct_sorted_answers():
    rows = task.generate_rows(300, seed=3)
    for row in rows:
        user, assistant = row["messages"]
        assert (user["role"], assistant["role"]) == ("user", "assistant")
        assert user["content"].startswith("Sort these numbers from smallest to largest: ")
        given = _numbers(user["content"].split(":", 1)[1])
        assert 3 <= len(given) <= 5
        assert all(1 <= n <= 99 for n in given)
        # Independent check: parse the answer back and compare with Python's sort.
        assert [int(part) for part in assistant["content"].split(", ")] == sorted(given)
    # Not a degenerate task: the question is usually not already sorted.
    given_lists = [_numbers(_prompt(r).split(":", 1)[1]) for r in rows]
    unsorted = sum(given != sorted(given) for given in given_lists)
    assert unsorted > 0.8 * len(rows)


def test_no_two_rows_share_a_set_of_numbers():
    rows = task.generate_rows(500, seed=0)
    keys = {tuple(sorted(_numbers(_prompt(r)))) for r in rows}
    assert len(keys) == len(rows)


def test_train_and_held_out_rows_are_disjoint(tmp_path):
    train_path, eval_path = task.write_task_files(tmp_path / "task", n_train=400, n_eval=60, seed=5)
    train = [json.loads(line) for line in train_path.read_text().splitlines()]
    held_out = [json.loads(line) for line in eval_path.read_text().splitlines()]
    assert (len(train), len(held_out)) == (400, 60)
    assert (train_path.name, eval_path.name) == ("train.jsonl", "eval.jsonl")
    train_keys = {tuple(sorted(_numbers(_prompt(r)))) for r in train}
    eval_keys = {tuple(sorted(_numbers(_prompt(r)))) for r in held_out}
    assert not train_keys & eval_keys
    assert (train, held_out) == task.split_rows(400, 60, seed=5)


def test_split_drops_training_rows_that_collide_with_held_out_rows(monkeypatch):
    # Force a collision: make the held-out stream identical to the training stream.
    monkeypatch.setattr(task, "_EVAL_SEED_OFFSET", 0)
    train, held_out = task.split_rows(30, 10, seed=11)
    assert len(train) == 30
    assert not {_prompt(r) for r in train} & {_prompt(r) for r in held_out}
    assert train == task.generate_rows(40, seed=11)[10:]


@pytest.mark.parametrize(
    "generated",
    ["7, 19, 42", "7, 19, 42\n", "  7,19,42 ", "7 ,19 ,  42", "7,\n19, 42"],
)
def test_is_correct_tolerates_whitespace(generated):
    assert task.is_correct("7, 19, 42", generated)


@pytest.mark.parametrize(
    "generated",
    ["42, 19, 7", "7, 19", "7, 19, 42.", "The sorted list is 7, 19, 42", "", "7, 1 9, 42", "7; 19; 42"],
)
def test_is_correct_rejects_anything_else(generated):
    assert not task.is_correct("7, 19, 42", generated)


def test_score_samples_counts_exact_matches():
    rows = task.generate_rows(8, seed=2)
    perfect = [(_prompt(r), _answer(r), _answer(r)) for r in rows]
    assert task.score_samples(perfect).accuracy == 1.0
    half = [(p, e, g if i % 2 else "no idea") for i, (p, e, g) in enumerate(perfect)]
    result = task.score_samples(half)
    assert (result.accuracy, result.n, result.correct) == (0.5, 8, 4)
    assert task.score_samples([]).accuracy == 0.0


class _FakeTokenizer:
    """Character-level tokenizer with a ChatML-looking template; id 0 pads, id 1 ends a turn."""

    pad_token_id = 0
    eos_token_id = 1
    eos_token = "<|im_end|>"

    def __init__(self):
        self.padding_side = "right"
        self.seen_padding_sides: list[str] = []

    def apply_chat_template(self, messages, tokenize, add_generation_prompt):
        assert tokenize is False and add_generation_prompt is True
        return "".join(f"<{m['role']}>{m['content']}" for m in messages) + "<assistant>"

    def __call__(self, texts, return_tensors, padding, add_special_tokens):
        import torch

        self.seen_padding_sides.append(self.padding_side)
        ids = [[ord(c) for c in text] for text in texts]
        width = max(len(x) for x in ids)
        rows, masks = [], []
        for x in ids:
            pad = [self.pad_token_id] * (width - len(x))
            rows.append(pad + x if self.padding_side == "left" else x + pad)
            masks.append([0] * len(pad) + [1] * len(x) if self.padding_side == "left" else [1] * len(x) + [0] * len(pad))
        return {"input_ids": torch.tensor(rows), "attention_mask": torch.tensor(masks)}

    def decode(self, ids, skip_special_tokens):
        return "".join(chr(i) for i in ids.tolist() if not (skip_special_tokens and i in (0, 1)))


class _FakeModel:
    """Answers each prompt from a table, appending to the (left-padded) prompt like ``generate``."""

    device = "cpu"

    def __init__(self, answers: dict[str, str]):
        self.answers = answers
        self.training = True

    def eval(self):
        self.training = False
        return self

    def train(self, mode: bool = True):
        self.training = mode
        return self

    def generate(self, input_ids, attention_mask, max_new_tokens, do_sample, pad_token_id, eos_token_id):
        import torch

        assert do_sample is False and not self.training
        outputs = []
        for ids, mask in zip(input_ids.tolist(), attention_mask.tolist()):
            assert mask[-1] == 1, "prompts must be left-padded so generation starts right after them"
            prompt = "".join(chr(i) for i, m in zip(ids, mask) if m)
            question = prompt[len("<user>") : -len("<assistant>")]
            outputs.append([ord(c) for c in self.answers[question]][:max_new_tokens] + [eos_token_id])
        width = max(len(o) for o in outputs)
        new = [o + [pad_token_id] * (width - len(o)) for o in outputs]
        return torch.cat([input_ids, torch.tensor(new)], dim=1)


def test_score_runs_batched_left_padded_greedy_generation_and_restores_state():
    pytest.importorskip("torch")
    rows = task.generate_rows(10, seed=4)  # 3 to 5 numbers: prompts of different lengths
    tokenizer = _FakeTokenizer()
    model = _FakeModel({_prompt(r): " " + _answer(r) + "\n" for r in rows})
    result = task.score(model, tokenizer, rows, max_new_tokens=32, batch_size=4)
    assert (result.accuracy, result.n) == (1.0, 10)
    assert [s[0] for s in result.samples] == [_prompt(r) for r in rows]
    assert all(generated == expected for _, expected, generated in result.samples)  # stripped
    assert tokenizer.seen_padding_sides == ["left"] * 3
    assert tokenizer.padding_side == "right" and model.training is True

    model.answers[_prompt(rows[0])] = "1, 2, 3"
    assert task.score(model, tokenizer, rows, batch_size=16).accuracy == pytest.approx(0.9)


def test_report_shows_both_scores_and_samples():
    rows = task.generate_rows(5, seed=9)
    before = task.score_samples([(_prompt(r), _answer(r), "Sorting is fun.\nReally.") for r in rows])
    after = task.score_samples([(_prompt(r), _answer(r), _answer(r)) for r in rows])
    report = task.format_report(before, after, n_samples=2)
    assert "0.00" in report and "1.00" in report
    assert report.count("prompt:") == 2
    assert "Sorting is fun.\\nReally." in report  # one line per sample
    assert _answer(rows[0]) in report and _answer(rows[2]) not in report


def test_defaults_are_sane():
    assert task.DEFAULT_TRAIN_ROWS >= task.DEFAULT_MAX_STEPS * task.DEFAULT_BATCH_SIZE
    assert 0 < task.DEFAULT_LR < 1e-3
    assert task.DEFAULT_EVAL_ROWS > 0 and task.DEFAULT_SEQUENCE_LEN >= 96


def test_importing_the_module_does_not_import_torch():
    code = "import sys, ft_default_task.task; print('torch' in sys.modules, 'transformers' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


def test_preference_pairs_choose_the_right_answer_and_reject_a_plausible_wrong_one():
    train, held_out = task.preference_pairs(40, 10, seed=3)
    assert (train, held_out) == task.preference_pairs(40, 10, seed=3)  # deterministic
    assert len(train) == 40 and len(held_out) == 10
    for pair in train + held_out:
        prompt = pair["prompt"][-1]["content"]
        numbers = [int(t) for t in re.findall(r"\d+", prompt)]
        chosen, rejected = pair["chosen"][0]["content"], pair["rejected"][0]["content"]
        assert pair["prompt"][-1]["role"] == "user" and pair["chosen"][0]["role"] == "assistant"
        assert chosen == ", ".join(map(str, sorted(numbers)))
        assert rejected != chosen and sorted(int(t) for t in rejected.split(", ")) == sorted(numbers)
    train_sets = {tuple(sorted(map(int, re.findall(r"\d+", p["prompt"][-1]["content"])))) for p in train}
    held_sets = {tuple(sorted(map(int, re.findall(r"\d+", p["prompt"][-1]["content"])))) for p in held_out}
    assert not train_sets & held_sets


@pytest.mark.parametrize("extra, expected", [
    (["+adapter=lora"], "adapter"),                       # an adapter's rate, not the full fine-tune's 5e-5
    (["+adapter=lora", "optim.lr=2e-4"], 2e-4),           # what the user sets wins
    (["+adapter=lora", "experiment=null"], 2e-5),         # no embedded experiment: the optim group's default
    ([], 5e-5),                                           # the full fine-tune keeps the experiment's rate
])
def test_the_default_tasks_learning_rate_fits_the_adapter(tiny_model_dir, tmp_path, extra, expected):
    from ft_default_task.plugin import ADAPTER_LR
    from ft_testing import build_context

    ctx = build_context([f"model.name_or_path={tiny_model_dir}", *extra], tmp_path / "run")
    assert ctx.args.learning_rate == (ADAPTER_LR if expected == "adapter" else expected)
    assert ctx.cfg.optim.lr == ctx.args.learning_rate  # the config hooks, trackers and records read says the same
