"""Bidirectional attention for a decoder-only model, through transformers' own mask interface.

transformers builds a causal mask unless the model is given a 4-D mask, which it uses as is (for sdpa,
eager and flex attention alike); sdpa adds causality by itself only when no mask is given and the
attention module says ``is_causal``. So ft-diffusion (1) always passes an explicit 4-D additive mask,
built here: every position attends to every real (non-padding) position of its own sequence, and of no
other sequence of a packed row; and (2) sets ``is_causal = False`` on the model's attention modules (an
attribute the attention functions read, so ft-multipack's per-row attention and sdpa never fall back to
causal). Nothing in transformers is patched.
"""

from __future__ import annotations

from typing import Any


def bidirectional_mask(attention_mask: Any | None, position_ids: Any | None, shape: tuple[int, int], dtype: Any,
                       device: Any, causal: bool = False) -> Any:
    """``[B, 1, L, L]`` additive mask (0 = attend, dtype min = blocked).

    Real positions attend to the real positions of their own sequence (rows of a pack are told apart by
    position ids restarting at 0); padding attends to itself only, so no row of the softmax is empty.
    ``causal`` (an ablation: the same model and training with left-to-right attention) also blocks the future.
    """
    import torch

    from ft_diffusion.noise import segment_ids

    batch, length = shape
    valid = torch.ones(shape, dtype=torch.bool, device=device) if attention_mask is None else attention_mask.bool()
    segments = segment_ids(position_ids, shape, device)
    allowed = (segments[:, :, None] == segments[:, None, :]) & valid[:, None, :] & valid[:, :, None]
    if causal:
        allowed &= torch.ones(length, length, dtype=torch.bool, device=device).tril()
    allowed |= torch.eye(length, dtype=torch.bool, device=device)[None]
    mask = torch.zeros((batch, 1, length, length), dtype=dtype, device=device)
    return mask.masked_fill(~allowed[:, None], torch.finfo(dtype).min)


def make_bidirectional(model: Any) -> int:
    """Set ``is_causal = False`` on every module that has the attribute; returns how many."""
    count = 0
    for module in model.modules():
        if getattr(module, "is_causal", None) is True:
            module.is_causal = False
            count += 1
    return count


def accepts_logits_to_keep(model: Any) -> bool:
    """Whether the model's forward can compute the head on the last positions only (``logits_to_keep``:
    transformers' causal LMs), looking through DDP/DeepSpeed (``.module``) and PEFT wrappers."""
    import inspect

    inner = getattr(model, "module", model)
    inner = inner.get_base_model() if hasattr(inner, "get_base_model") else inner
    return "logits_to_keep" in inspect.signature(inner.forward).parameters


def forward(model: Any, input_ids: Any, attention_mask: Any | None = None, position_ids: Any | None = None,
            causal: bool = False, last: int = 0) -> Any:
    """The model's logits for ``input_ids`` under the diffusion attention mask.

    ``last`` > 0 asks for the logits of the last ``last`` positions only (the answer: the vocabulary head
    is a fifth of a small model's compute and most positions are prompt); models without
    ``logits_to_keep`` return every position and are cut here, so the result is the same either way."""
    dtype = next(model.parameters()).dtype
    if not dtype.is_floating_point:  # a quantised base: the mask follows the compute dtype
        import torch

        dtype = torch.float32
    mask = bidirectional_mask(attention_mask, position_ids, tuple(input_ids.shape), dtype, input_ids.device, causal)
    kwargs = {"position_ids": position_ids} if position_ids is not None else {}
    keep = 0 < last < input_ids.shape[1]
    if keep and accepts_logits_to_keep(model):
        kwargs["logits_to_keep"] = last
    logits = model(input_ids=input_ids, attention_mask=mask, **kwargs).logits
    return logits[:, -last:] if keep else logits
