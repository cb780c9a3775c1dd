"""The embedded default task: what ``ft run`` with no arguments fine-tunes SmolLM2-135M-Instruct on.

It has to show, in a few minutes on a laptop CPU, that fine-tuning did something. So ft makes its own
data (no third-party data ships with ft): sort three to five numbers from smallest to largest,
answering with the sorted list and nothing else::

    user:      Sort these numbers from smallest to largest: 42, 7, 19
    assistant: 7, 19, 42

SmolLM2-135M-Instruct scores 0 % on this out of the box (it echoes the list, comments on it, or
answers in prose), and a short full fine-tune teaches it both the format and, mostly, the ordering.
Rows are deterministic from a seed, answers are checked by exact match (whitespace-tolerant), and the
held-out rows never share a set of numbers with the training rows.

Heavy imports (torch, transformers) stay inside functions: ``ft --help`` and ``ft validate`` import the
kernel and must stay fast.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

TASK_NAME = "sort-numbers"
TASK_DESCRIPTION = "sort 3-5 numbers (1-99) from smallest to largest"
PROMPT_PREFIX = "Sort these numbers from smallest to largest: "

# Chosen by experiment: a full fine-tune of SmolLM2-135M-Instruct in fp32 on a 2-core CPU
# (torch.set_num_threads(2), AdamW, loss on the assistant answer and its <|im_end|> only).
# - One step of 8 rows (68-76 tokens per padded batch) takes 2.8 s (median of 11 steps, idle
#   machine), so 60 steps train in under 3 min; scoring 40 held-out rows takes 5 s. The whole
#   `ft run` (startup 5 s, GGUF conversion 21 s on first use, scoring before and after, 60 steps,
#   saving) adds up to about 4 min from those parts. A second busy process on the same two cores makes steps 10x slower.
# - Held-out exact match, before -> after: 0.00 -> 0.69 (64 rows; `ft run` with these values, cosine
#   decay, 5 warmup steps), 0.00 -> 0.73 (100 rows; plain transformers.Trainer, linear decay, no
#   warmup). 20 steps already give 0.61; lr 1e-4 gives 0.71, no better than 5e-5.
# - 480 train rows = 60 steps x 8: each row is seen once, and no epoch boundary (and the checkpoint
#   written there) falls inside the run.
DEFAULT_TRAIN_ROWS = 480
DEFAULT_EVAL_ROWS = 64
DEFAULT_MAX_STEPS = 60
DEFAULT_BATCH_SIZE = 8
DEFAULT_LR = 5e-5
DEFAULT_SEQUENCE_LEN = 128  # rows are 50-76 tokens with SmolLM2's ChatML template and system line
DEFAULT_SEED = 1234  # the seed of the measurements above (and of conf/data/default_task.yaml)
DEFAULT_MAX_NEW_TOKENS = 24  # the longest answer is 15 tokens; leave room to see what goes wrong

_EVAL_SEED_OFFSET = 1_000_003  # held-out rows come from a different stream than training rows
_MIN_COUNT, _MAX_COUNT = 3, 5
_LOW, _HIGH = 1, 99


@dataclass
class TaskScore:
    """Exact-match accuracy on held-out rows, with every (prompt, expected, generated) triple."""

    accuracy: float
    n: int
    samples: list[tuple[str, str, str]] = field(default_factory=list)

    @property
    def correct(self) -> int:
        return round(self.accuracy * self.n)


def _number_sets(seed: int) -> Iterator[tuple[int, ...]]:
    """Endless stream of distinct lists of numbers; no two share the same set of numbers."""
    rng = random.Random(seed)
    seen: set[tuple[int, ...]] = set()
    while True:
        count = rng.randint(_MIN_COUNT, _MAX_COUNT)
        numbers = tuple(rng.sample(range(_LOW, _HIGH + 1), count))
        key = tuple(sorted(numbers))
        if key in seen:
            continue
        seen.add(key)
        yield numbers


def make_row(numbers: Sequence[int]) -> dict[str, Any]:
    """One chat row: the user asks to sort ``numbers``, the assistant gives the sorted list."""
    prompt = PROMPT_PREFIX + ", ".join(str(n) for n in numbers)
    answer = ", ".join(str(n) for n in sorted(numbers))
    return {"messages": [{"role": "user", "content": prompt}, {"role": "assistant", "content": answer}]}


def generate_rows(n: int, seed: int) -> list[dict[str, Any]]:
    """``n`` rows in chat form, the same for the same seed, no two with the same set of numbers."""
    stream = _number_sets(seed)
    return [make_row(next(stream)) for _ in range(n)]


def split_rows(n_train: int, n_eval: int, seed: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Training and held-out rows from separate seeded streams, with shared number sets removed.

    The held-out rows are drawn first from their own stream; training rows whose set of numbers
    (in any order) appears among them are skipped, so a model cannot score by memorising.
    """
    held_out = generate_rows(n_eval, seed + _EVAL_SEED_OFFSET)
    held_out_keys = {_key(row) for row in held_out}
    train: list[dict[str, Any]] = []
    for numbers in _number_sets(seed):
        if len(train) == n_train:
            break
        if tuple(sorted(numbers)) not in held_out_keys:
            train.append(make_row(numbers))
    return train, held_out


def wrong_answer(numbers: Sequence[int], rng: random.Random) -> str:
    """A plausible wrong answer (a preference pair's rejected side): the list echoed as given, sorted the
    wrong way round, or sorted with two neighbours swapped; never the right answer."""
    right = sorted(numbers)
    swapped = list(right)
    at = rng.randrange(len(right) - 1)
    swapped[at], swapped[at + 1] = swapped[at + 1], swapped[at]
    candidates = [right[::-1], swapped] + ([list(numbers)] if list(numbers) != right else [])
    return ", ".join(str(n) for n in rng.choice(candidates))


def preference_pairs(n_train: int, n_eval: int, seed: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The default task as preference pairs (training and held-out, from :func:`split_rows`): the prompt's
    chat messages, the right answer chosen and a plausible wrong one rejected (assistant messages)."""
    rng = random.Random(seed + 7)

    def pair(row: dict[str, Any]) -> dict[str, Any]:
        messages, answer = prompt_and_answer(row)
        rejected = wrong_answer([int(t) for t in re.findall(r"\d+", messages[-1]["content"])], rng)
        return {"prompt": messages, "chosen": [{"role": "assistant", "content": answer}],
                "rejected": [{"role": "assistant", "content": rejected}]}

    train, held_out = split_rows(n_train, n_eval, seed)
    return [pair(row) for row in train], [pair(row) for row in held_out]


def write_task_files(folder: Path, n_train: int, n_eval: int, seed: int) -> tuple[Path, Path]:
    """Write ``train.jsonl`` and ``eval.jsonl`` (chat rows) into ``folder``; return their paths."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    train, held_out = split_rows(n_train, n_eval, seed)
    paths = (folder / "train.jsonl", folder / "eval.jsonl")
    for path, rows in zip(paths, (train, held_out)):
        with path.open("w", encoding="utf-8") as handle:
            for row in rows:
                handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    return paths


def _key(row: dict[str, Any]) -> tuple[int, ...]:
    """The set of numbers a row is about, order ignored."""
    prompt = row["messages"][0]["content"]
    return tuple(sorted(int(token) for token in re.findall(r"-?\d+", prompt)))


def normalize(text: str) -> str:
    """Whitespace-insensitive form of an answer: runs of spaces collapse, commas read ``", "``."""
    text = " ".join(text.split())
    return re.sub(r"\s*,\s*", ", ", text)


def is_correct(expected: str, generated: str) -> bool:
    """Exact match up to whitespace (so a trailing newline or ``"7,19"`` still counts)."""
    return normalize(expected) == normalize(generated)


def prompt_and_answer(row: dict[str, Any]) -> tuple[list[dict[str, str]], str]:
    """Split a chat row into the messages the model sees and the final assistant answer."""
    messages = row["messages"]
    if not messages or messages[-1]["role"] != "assistant":
        raise ValueError("a task row must end with the assistant's answer")
    return messages[:-1], messages[-1]["content"]


def score(
    model: Any,
    tokenizer: Any,
    rows: Sequence[dict[str, Any]],
    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
    batch_size: int = 32,
    progress: str | None = None,
    sampler: Any = None,
) -> TaskScore:
    """Greedy-decode each row's prompt with the chat template and score exact matches.

    Prompts are left-padded so that every row in a batch continues right where its prompt ends. The
    model's train/eval mode and the tokenizer's padding side are restored afterwards. ``progress``
    names a progress bar on stderr (shown on a terminal only): scoring a few dozen rows on a CPU takes
    long enough to look hung without one. ``sampler`` (a method's ``text_sampler``, e.g. masked
    diffusion) generates instead of ``model.generate``.
    """
    import sys

    import torch
    from tqdm.auto import tqdm

    prompts = [prompt_and_answer(row) for row in rows]
    was_training = model.training
    padding_side = tokenizer.padding_side
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    samples: list[tuple[str, str, str]] = []
    model.eval()
    tokenizer.padding_side = "left"
    bar = tqdm(total=len(prompts), desc=progress, unit="row", file=sys.stderr, leave=False,
               disable=None if progress else True)
    try:
        for start in range(0, len(prompts), batch_size):
            batch = prompts[start : start + batch_size]
            texts = [
                tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
                for messages, _ in batch
            ]
            if sampler is not None:
                prompt_ids = [tokenizer(text, add_special_tokens=False)["input_ids"] for text in texts]
                new_tokens = [until_eos(ids, tokenizer) for ids in sampler(prompt_ids, max_new_tokens)]
            else:
                encoded = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
                encoded = {name: tensor.to(model.device) for name, tensor in encoded.items()}
                with torch.inference_mode():
                    output = model.generate(
                        **encoded,
                        max_new_tokens=max_new_tokens,
                        do_sample=False,
                        pad_token_id=pad_id,
                        eos_token_id=tokenizer.eos_token_id,
                    )
                new_tokens = output[:, encoded["input_ids"].shape[1] :]
            for (messages, expected), tokens in zip(batch, new_tokens):
                generated = tokenizer.decode(tokens, skip_special_tokens=True).strip()
                samples.append((messages[-1]["content"], expected, generated))
            bar.update(len(batch))
    finally:
        bar.close()
        tokenizer.padding_side = padding_side
        model.train(was_training)
    return score_samples(samples)


def until_eos(ids: list[int], tokenizer: Any) -> list[int]:
    """Token ids up to the first end-of-sequence (or padding) token: what a ``text_sampler`` answered."""
    stops = {t for t in (tokenizer.eos_token_id, tokenizer.pad_token_id) if t is not None}
    return next((ids[:i] for i, t in enumerate(ids) if t in stops), ids)


def score_samples(samples: list[tuple[str, str, str]]) -> TaskScore:
    """Accuracy of already generated (prompt, expected, generated) triples; no model needed."""
    hits = sum(is_correct(expected, generated) for _, expected, generated in samples)
    return TaskScore(accuracy=hits / len(samples) if samples else 0.0, n=len(samples), samples=samples)


def _one_line(text: str, width: int = 70) -> str:
    flat = text.replace("\n", "\\n")
    return flat if len(flat) <= width else flat[: width - 3] + "..."


def format_report(before: TaskScore, after: TaskScore, n_samples: int = 3) -> str:
    """A before/after accuracy table and a few held-out samples, for the end of ``ft run``."""
    lines = [
        f"Default task: {TASK_DESCRIPTION} (held-out, greedy, exact match)",
        f"  {'':<10}{'before':>8}{'after':>8}",
        f"  {'accuracy':<10}{before.accuracy:>8.2f}{after.accuracy:>8.2f}",
        f"  {'correct':<10}{before.correct:>8}{after.correct:>8}   of {after.n}",
    ]
    shown = min(n_samples, len(before.samples), len(after.samples))
    if shown:
        lines.append("Samples:")
    for (prompt, expected, said_before), (_, _, said_after) in zip(before.samples[:shown], after.samples[:shown]):
        lines += [
            f"  prompt:   {_one_line(prompt)}",
            f"  expected: {_one_line(expected)}",
            f"  before:   {_one_line(said_before)}  [{'ok' if is_correct(expected, said_before) else 'wrong'}]",
            f"  after:    {_one_line(said_after)}  [{'ok' if is_correct(expected, said_after) else 'wrong'}]",
        ]
    return "\n".join(lines)
