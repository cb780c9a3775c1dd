"""ft-data's public API: what other plugins may import from this distribution (declare ``ft-data`` as a
dependency). Sources, formats with exact label masking, the tokenized-data cache, batching.

Modules: :mod:`ft_data.sources` (files, folders, hub datasets), :mod:`ft_data.formats` (alpaca,
chat_template, completion, input_output, pretokenized, template), :mod:`ft_data.pipeline` (length
policy, counts, cache, mixing and splitting), :mod:`ft_data.cache`, :mod:`ft_data.show` (``ft preprocess
--show``), :mod:`ft_data.schema` (``DataConfig``, the data options' schema).

Importing this package is cheap: ``datasets``, ``pyarrow`` and ``torch`` load only when used.
"""

from __future__ import annotations

from typing import Any

from ft_data.formats import (
    ALPACA_PROMPT_NO_INPUT,
    ALPACA_PROMPT_WITH_INPUT,
    BUILTIN_FORMATS,
    DEFAULT_ROLE_MAP,
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
from ft_data.pipeline import (
    DatasetSpec,
    Policy,
    PreparedData,
    apply_policy,
    options_for,
    plain,
    policy_for,
    prepare_data,
    resolve_formats,
    run_format,
    specs_from_config,
)
from ft_data.pipeline import _select as select_rows
from ft_data.plugin import bundle_from_rows
from ft_data.schema import DataConfig, DatasetConfig
from ft_data.sources import RowSource, is_local, is_saved_dataset, load_hub, read_local, read_rows

__all__ = [
    "ALPACA_PROMPT_NO_INPUT", "ALPACA_PROMPT_WITH_INPUT", "BUILTIN_FORMATS", "IGNORE_INDEX", "Bad", "FormatOptions",
    "format_alpaca", "format_chat_template", "format_completion", "format_input_output", "format_pretokenized",
    "format_template",
    "PaddingCollator", "PreparedData", "prepare_data", "read_rows", "bundle_from_rows",
    "DEFAULT_ROLE_MAP", "DataConfig", "DatasetConfig", "DatasetSpec", "Policy", "RowSource", "is_local", "is_saved_dataset",
    "load_hub", "options_for", "plain", "policy_for", "read_local", "resolve_formats", "select_rows", "specs_from_config",
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
