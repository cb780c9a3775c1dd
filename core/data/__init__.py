"""Data loading, formatting with label masking, and batching for supervised fine-tuning.

Formats turn one row into ``input_ids`` and ``labels`` (``-100`` where the loss must not look).
Loading is lazy about heavy imports: ``datasets`` and ``torch`` are imported only when used.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ft.errors import DataError

IGNORE_INDEX = -100

ALPACA_PROMPT_WITH_INPUT = (
    "Below is an instruction that describes a task, paired with an input that provides further "
    "context. Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:\n"
)
ALPACA_PROMPT_NO_INPUT = (
    "Below is an instruction that describes a task. Write a response that appropriately completes "
    "the request.\n\n### Instruction:\n{instruction}\n\n### Response:\n"
)

FormatFn = Callable[[dict[str, Any], Any, Any], dict[str, list[int]]]


def read_rows(path: str | Path) -> list[dict[str, Any]]:
    """Rows of a .json (array) or .jsonl file, gzip allowed; bad lines raise :class:`DataError`."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"data file '{path}' does not exist")
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as handle:
        text = handle.read()
    stem_suffix = Path(path.stem).suffix if path.suffix == ".gz" else path.suffix
    if stem_suffix == ".json" and text.lstrip().startswith("["):
        try:
            rows = json.loads(text)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}: invalid JSON at line {exc.lineno}: {exc.msg}") from exc
        numbered = list(enumerate(rows, start=1))
        where = "row"
    else:
        numbered = []
        for lineno, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                numbered.append((lineno, json.loads(line)))
            except json.JSONDecodeError as exc:
                raise DataError(f"{path}:{lineno}: invalid JSON: {exc.msg}") from exc
        where = "line"
    for index, row in numbered:
        if not isinstance(row, dict):
            raise DataError(f"{path} {where} {index}: expected a JSON object, got {type(row).__name__}")
    return [row for _, row in numbered]


def _require(row: dict[str, Any], key: str, kind: type = str) -> Any:
    if key not in row:
        raise DataError(f"row is missing the field '{key}' (fields present: {', '.join(sorted(row))})")
    if not isinstance(row[key], kind):
        raise DataError(f"field '{key}' must be a {kind.__name__}, got {type(row[key]).__name__}")
    return row[key]


def format_alpaca(row: dict[str, Any], tokenizer: Any, options: Any) -> dict[str, list[int]]:
    """Stanford Alpaca prompt; the prompt is masked, the response and EOS are trained."""
    instruction = _require(row, "instruction")
    output = _require(row, "output")
    extra = row.get("input") or ""
    template = ALPACA_PROMPT_WITH_INPUT if extra.strip() else ALPACA_PROMPT_NO_INPUT
    prompt = template.format(instruction=instruction, input=extra)
    prompt_ids = tokenizer(prompt, add_special_tokens=True)["input_ids"]
    full_ids = tokenizer(prompt + output, add_special_tokens=True)["input_ids"]
    if tokenizer.eos_token_id is not None:
        full_ids = [*full_ids, tokenizer.eos_token_id]
    n_prompt = _common_prefix(prompt_ids, full_ids)
    train_inputs = bool(getattr(options, "train_on_inputs", False))
    labels = list(full_ids) if train_inputs else [IGNORE_INDEX] * n_prompt + full_ids[n_prompt:]
    return {"input_ids": full_ids, "labels": labels}


def _common_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def format_chat_template(row: dict[str, Any], tokenizer: Any, options: Any) -> dict[str, list[int]]:
    """Messages rendered with the tokenizer's chat template; assistant content and its end-of-turn
    token are trained, the template's role headers never are."""
    messages = _require(row, "messages", list)
    if not messages:
        raise DataError("row has an empty 'messages' list")
    for message in messages:
        if not isinstance(message, dict) or "role" not in message or "content" not in message:
            raise DataError("each message needs a 'role' and a 'content'")
    text = tokenizer.apply_chat_template(messages, tokenize=False)
    spans = _assistant_spans(messages, tokenizer, text)
    encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    input_ids = list(encoded["input_ids"])
    train_all = bool(getattr(options, "train_on_inputs", False))
    labels = []
    for token_id, (start, end) in zip(input_ids, encoded["offset_mapping"]):
        inside = any(start >= s and end <= e and end > start for s, e in spans)
        labels.append(token_id if train_all or inside else IGNORE_INDEX)
    return {"input_ids": input_ids, "labels": labels}


def _assistant_spans(messages: list[dict[str, Any]], tokenizer: Any, text: str) -> list[tuple[int, int]]:
    """Character spans of each assistant turn's content plus the template's end-of-turn marker."""
    spans: list[tuple[int, int]] = []
    for index, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        before = tokenizer.apply_chat_template(messages[:index], tokenize=False, add_generation_prompt=True)
        through = tokenizer.apply_chat_template(messages[: index + 1], tokenize=False)
        if not text.startswith(before) or not text.startswith(through):
            raise DataError("the chat template does not render turns as prefixes; cannot mask turns exactly")
        end = len(through)
        # Whitespace the template adds after the end-of-turn token (a newline) is not trained.
        while end > len(before) and through[end - 1].isspace():
            end -= 1
        spans.append((len(before), end))
    return spans


BUILTIN_FORMATS: dict[str, FormatFn] = {
    "alpaca": format_alpaca,
    "chat_template": format_chat_template,
}


def tokenize_rows(
    rows: list[dict[str, Any]], formatter: FormatFn, tokenizer: Any, options: Any, source: str = "data"
) -> tuple[list[dict[str, list[int]]], dict[str, int]]:
    """Tokenize rows, dropping (and counting) over-long rows and rows with nothing to train."""
    out: list[dict[str, list[int]]] = []
    stats = {"rows_in": len(rows), "dropped_too_long": 0, "dropped_no_trained_tokens": 0,
             "tokens": 0, "trained_tokens": 0}
    max_len = int(getattr(options, "sequence_len", 0) or 0)
    for index, row in enumerate(rows, start=1):
        try:
            example = formatter(row, tokenizer, options)
        except DataError as exc:
            raise DataError(f"{source} row {index}: {exc}") from exc
        if max_len and len(example["input_ids"]) > max_len:
            stats["dropped_too_long"] += 1
            continue
        trained = sum(1 for label in example["labels"] if label != IGNORE_INDEX)
        if trained == 0:
            stats["dropped_no_trained_tokens"] += 1
            continue
        example["attention_mask"] = [1] * len(example["input_ids"])
        stats["tokens"] += len(example["input_ids"])
        stats["trained_tokens"] += trained
        out.append(example)
    if not out:
        raise DataError(
            f"{source}: no row has a trained token after formatting ({stats['dropped_too_long']} too long "
            f"for data.sequence_len={max_len}, {stats['dropped_no_trained_tokens']} with every label masked)"
        )
    stats["rows"] = len(out)
    return out, stats


class PaddingCollator:
    """Right-pads ``input_ids`` with the pad token, ``labels`` with -100 and ``attention_mask`` with 0."""

    def __init__(self, pad_token_id: int, pad_to_multiple_of: int | None = None) -> None:
        self.pad_token_id = pad_token_id
        self.pad_to_multiple_of = pad_to_multiple_of

    def __call__(self, rows: list[dict[str, Any]]) -> dict[str, Any]:
        import torch

        length = max(len(r["input_ids"]) for r in rows)
        if self.pad_to_multiple_of:
            length = -(-length // self.pad_to_multiple_of) * self.pad_to_multiple_of
        batch: dict[str, list[list[int]]] = {"input_ids": [], "labels": [], "attention_mask": []}
        for row in rows:
            pad = length - len(row["input_ids"])
            batch["input_ids"].append(list(row["input_ids"]) + [self.pad_token_id] * pad)
            batch["labels"].append(list(row["labels"]) + [IGNORE_INDEX] * pad)
            batch["attention_mask"].append(list(row.get("attention_mask") or [1] * len(row["input_ids"])) + [0] * pad)
        return {key: torch.tensor(value, dtype=torch.long) for key, value in batch.items()}
