"""ft's data stage: sources, formats with exact label masking, the tokenized-data cache, batching.

Modules: :mod:`ft.data.sources` (files, folders, hub datasets), :mod:`ft.data.formats` (alpaca,
chat_template, completion, input_output, pretokenized, template), :mod:`ft.data.pipeline` (length
policy, counts, cache, mixing and splitting), :mod:`ft.data.cache`, :mod:`ft.data.preference`
(preference rows for the preference-method plugins), :mod:`ft.data.show` (``ft preprocess --show``).

Importing this package is cheap: ``datasets``, ``pyarrow`` and ``torch`` load only when used.
"""

from __future__ import annotations

from typing import Any

from ft.data.formats import (
    ALPACA_PROMPT_NO_INPUT,
    ALPACA_PROMPT_WITH_INPUT,
    BUILTIN_FORMATS,
    IGNORE_INDEX,
    Bad,
    FormatOptions,
    format_alpaca,
    format_chat_template,
    format_completion,
    format_input_output,
    format_pretokenized,
    format_template,
)
from ft.data.pipeline import Policy, PreparedData, apply_policy, prepare_data, run_format
from ft.data.preference import PreferenceData, load_preference_rows
from ft.data.sources import read_rows

__all__ = [
    "ALPACA_PROMPT_NO_INPUT", "ALPACA_PROMPT_WITH_INPUT", "BUILTIN_FORMATS", "IGNORE_INDEX", "Bad", "FormatOptions",
    "format_alpaca", "format_chat_template", "format_completion", "format_input_output", "format_pretokenized",
    "format_template",
    "PaddingCollator", "PreferenceData", "PreparedData", "load_preference_rows", "prepare_data", "read_rows",
    "tokenize_rows",
]


def tokenize_rows(rows: list[dict[str, Any]], formatter: Any, tokenizer: Any, options: Any,
                  source: str = "data") -> tuple[list[dict[str, list[int]]], dict[str, Any]]:
    """Format rows held in memory (no cache): drop and count over-long rows and rows with nothing to
    train, raise :class:`ft.errors.DataError` on a malformed row or when nothing is left."""
    if not isinstance(options, FormatOptions):
        options = FormatOptions.from_mapping(options)
    policy = Policy(sequence_len=int(getattr(options, "sequence_len", 0) or 0))
    results = run_format(formatter, list(rows), tokenizer, options)
    return apply_policy(results, policy, lambda i: f"{source} row {i + 1}", source)


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
