"""``per_row`` attention: SDPA run one row at a time inside each pack.

With a block-diagonal mask, SDPA on a pack of length ``L`` still computes all ``L x L`` scores and
throws most away; on a CPU (and with sdpa on a GPU without flash-attention) that makes a packed
position slower than an unpacked one. Running SDPA causally on each row's slice costs
``sum(len_i ** 2)`` instead, which is what flash-attention's varlen kernels do on a GPU.

It is registered with transformers' public ``AttentionInterface`` under :data:`PER_ROW` (and with
sdpa's mask builder under the same name), and selected with ``model.set_attn_implementation``: no
library code is patched. Anything that is not a packed batch - generation with a cache, a padded
batch, rows with no restart - goes to transformers' own ``sdpa_attention_forward`` with the mask
transformers built, so the model behaves exactly as with ``sdpa`` there.
"""

from __future__ import annotations

from typing import Any

import torch

PER_ROW = "ft_multipack_per_row_sdpa"


def row_spans(positions: torch.Tensor) -> list[tuple[int, int]] | None:
    """``[(start, end), ...]`` of the rows in one pack, or None if ``positions`` is not made of
    ``0..n-1`` runs (left padding in generation, for example)."""
    starts = (positions == 0).nonzero().flatten().tolist()
    if not starts or starts[0] != 0:
        return None
    ends = starts[1:] + [positions.shape[0]]
    spans = list(zip(starts, ends))
    expected = torch.cat([torch.arange(end - start, device=positions.device) for start, end in spans])
    if not torch.equal(positions, expected):
        return None
    return spans


def per_row_sdpa_forward(module: torch.nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                         attention_mask: torch.Tensor | None, dropout: float = 0.0, scaling: float | None = None,
                         is_causal: bool | None = None, **kwargs: Any) -> tuple[torch.Tensor, None]:
    """Attention for ``(batch, heads, L, dim)`` tensors; returns ``(batch, L, heads, dim)`` like sdpa."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    positions = kwargs.get("position_ids")
    length = query.shape[2]
    causal = is_causal if is_causal is not None else getattr(module, "is_causal", True)
    spans_per_row: list[list[tuple[int, int]]] | None = None
    if positions is not None and causal and length > 1 and key.shape[2] == length and positions.shape[-1] == length:
        positions = positions.expand(query.shape[0], -1) if positions.shape[0] != query.shape[0] else positions
        found = [row_spans(row) for row in positions]
        whole = [spans for spans in found if spans is not None]
        if len(whole) == len(found) and not all(len(spans) == 1 for spans in whole):
            spans_per_row = whole  # packed rows; otherwise exactly what sdpa does
    if spans_per_row is None:
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      is_causal=is_causal, **kwargs)
    window = kwargs.pop("sliding_window", None)
    outputs = []
    for index, spans in enumerate(spans_per_row):
        pieces = []
        for start, end in spans:
            row_mask = None
            if window is not None and end - start > window:
                steps = torch.arange(end - start, device=query.device)
                distance = steps[:, None] - steps[None, :]
                row_mask = ((distance >= 0) & (distance < window))[None, None]
            piece, _ = sdpa_attention_forward(
                module, query[index:index + 1, :, start:end], key[index:index + 1, :, start:end],
                value[index:index + 1, :, start:end], row_mask, dropout=dropout, scaling=scaling,
                is_causal=row_mask is None, **kwargs)
            pieces.append(piece)
        outputs.append(torch.cat(pieces, dim=1))
    return torch.cat(outputs, dim=0), None


def register() -> None:
    """Make :data:`PER_ROW` a name transformers accepts (idempotent)."""
    from transformers import AttentionInterface, AttentionMaskInterface
    from transformers.masking_utils import sdpa_mask

    AttentionInterface.register(PER_ROW, per_row_sdpa_forward)
    AttentionMaskInterface.register(PER_ROW, sdpa_mask)


def base_model(model: Any) -> Any:
    """The transformers model under a PEFT wrapper (or the model itself)."""
    getter = getattr(model, "get_base_model", None)
    return getter() if callable(getter) else model


def use_attention(model: Any, implementation: str) -> None:
    """Switch the model's attention implementation through transformers' public API."""
    if implementation == PER_ROW:
        register()
    base_model(model).set_attn_implementation(implementation)
