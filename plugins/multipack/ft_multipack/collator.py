"""Lay the rows of a pack side by side so that each row trains exactly as it would alone.

Per row: ``input_ids`` and ``labels`` are concatenated, ``position_ids`` restart at 0, and the row's
first label is set to -100. The first label is never a prediction target in an unpacked row (a causal
LM predicts token ``t + 1`` from position ``t``), but in a pack it would be predicted from the previous
row's last token; masking it keeps the trained-token count and every loss term identical.

Attention isolation, two ways (``packing.attention``):

* ``position_ids``: no ``attention_mask`` at all, and ``use_cache=False`` (transformers only looks for
  packed sequences when there is neither a mask nor a KV cache). transformers sees positions restart
  and builds a block-diagonal causal mask itself (sdpa, eager, flex) or runs flash-attention's varlen
  kernels. It composes with sliding windows and costs no mask memory in the collator.
* ``block_mask``: an explicit 4-D block-diagonal causal mask (boolean for sdpa, additive in the model's
  dtype for eager), for models whose code does not read packed ``position_ids``.

The padding at the end of a pack is its own segment (positions restart there too), so it never
attends into a row and no attention row is fully masked.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import torch

IGNORE_INDEX = -100
AttentionMode = Literal["position_ids", "block_mask"]


def _rows_of(feature: dict[str, Any]) -> tuple[list[Any], list[Any]]:
    """(input_ids per row, labels per row) of a pack, or of a single row treated as a pack of one."""
    ids, labels = feature["input_ids"], feature["labels"]
    if len(ids) and not isinstance(ids[0], (int, np.integer)) and hasattr(ids[0], "__len__"):
        return list(ids), list(labels)
    return [ids], [labels]


class PackedCollator:
    """``list[pack] -> batch``: one sequence per pack, padded to the longest pack in the batch."""

    def __init__(self, pad_token_id: int, attention: AttentionMode = "position_ids",
                 attn_implementation: str = "sdpa", mask_dtype: torch.dtype = torch.float32,
                 pad_to_multiple_of: int | None = 8) -> None:
        if attention not in ("position_ids", "block_mask"):
            raise ValueError(f"attention must be 'position_ids' or 'block_mask', got {attention!r}")
        if attention == "block_mask" and attn_implementation not in ("sdpa", "eager"):
            raise ValueError(f"a block mask is built for sdpa and eager attention, not {attn_implementation!r}; "
                             "use attention='position_ids'")
        self.pad_token_id = int(pad_token_id)
        self.attention = attention
        self.attn_implementation = attn_implementation
        self.mask_dtype = mask_dtype
        self.pad_to_multiple_of = pad_to_multiple_of

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, Any]:
        packs = [_rows_of(feature) for feature in features]
        longest = max(sum(len(row) for row in ids) for ids, _ in packs)
        width = longest
        if self.pad_to_multiple_of:
            width = -(-longest // self.pad_to_multiple_of) * self.pad_to_multiple_of
        count = len(packs)
        input_ids = np.full((count, width), self.pad_token_id, dtype=np.int64)
        labels = np.full((count, width), IGNORE_INDEX, dtype=np.int64)
        position_ids = np.zeros((count, width), dtype=np.int64)
        segments = np.zeros((count, width), dtype=np.int64)
        for index, (ids, row_labels) in enumerate(packs):
            start = 0
            for segment, (row_ids, row_label) in enumerate(zip(ids, row_labels)):
                size = len(row_ids)
                if len(row_label) != size:
                    raise ValueError(f"a row has {size} input_ids but {len(row_label)} labels")
                end = start + size
                input_ids[index, start:end] = row_ids
                labels[index, start:end] = row_label
                labels[index, start] = IGNORE_INDEX
                position_ids[index, start:end] = np.arange(size)
                segments[index, start:end] = segment
                start = end
            position_ids[index, start:] = np.arange(width - start)
            segments[index, start:] = len(ids)
        batch: dict[str, Any] = {"input_ids": torch.from_numpy(input_ids), "labels": torch.from_numpy(labels),
                                 "position_ids": torch.from_numpy(position_ids),
                                 # a KV cache turns transformers' packed-sequence detection off
                                 "use_cache": False}
        if self.attention == "block_mask":
            batch["attention_mask"] = self.block_mask(torch.from_numpy(segments))
        return batch

    def block_mask(self, segments: torch.Tensor) -> torch.Tensor:
        """``(batch, 1, L, L)``: query ``q`` sees key ``k`` when both are in one segment and ``k <= q``."""
        width = segments.shape[1]
        same = segments[:, :, None] == segments[:, None, :]
        causal = torch.ones(width, width, dtype=torch.bool).tril()
        allowed = (same & causal)[:, None, :, :]
        if self.attn_implementation == "sdpa":
            return allowed
        blocked = torch.zeros(allowed.shape, dtype=self.mask_dtype)
        return blocked.masked_fill_(~allowed, torch.finfo(self.mask_dtype).min)
