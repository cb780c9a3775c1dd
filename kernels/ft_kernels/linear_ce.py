"""Fused linear cross entropy: the loss of ``hidden @ weight.T`` without its ``[tokens, vocabulary]`` logits.

The vocabulary projection and its cross entropy are the largest activation of LLM fine-tuning: 8,192
tokens at a 49,152-word vocabulary are 1.6 GB of fp32 logits, and the naive backward keeps two more such
tensors. This autograd function walks the trained tokens in chunks; the forward keeps only each token's
log-sum-exp, the backward recomputes one chunk of logits at a time, turns it into the gradient of the
logits in place, and multiplies it into the hidden-state and head-weight gradients (the latter
accumulated in fp32). Peak extra memory is one chunk of logits, whatever the number of tokens.

The arithmetic on a chunk of logits (row statistics in the forward, the logits' gradient in the
backward) has two implementations: plain torch here (CPUs) and Triton kernels in
:mod:`ft_kernels.triton_ops` (GPUs; checked on the CPU under ``TRITON_INTERPRET=1``). The matrix
products are torch's in both.

Per trained token with logits ``z`` (soft-capped: ``z = cap * tanh(u / cap)`` of the raw ``u``) and
``lse = logsumexp(z)``, the loss is ``lse - (1 - eps) * z[target] - eps * mean(z) + z_loss * lse**2``
(``eps``: label smoothing, as in ``F.cross_entropy(label_smoothing=eps)``; ``z_loss``: PaLM's
auxiliary term), and its gradient is ``softmax(z) * (1 + 2 * z_loss * lse) - (1 - eps) * onehot - eps / V``
times ``1 - (z / cap)**2`` under soft-capping.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

IGNORE_INDEX = -100
Backend = Literal["auto", "torch", "triton"]


@dataclass(frozen=True)
class LossOptions:
    """What changes the loss itself (the chunk size and backend change only how it is computed)."""

    ignore_index: int = IGNORE_INDEX
    softcap: float | None = None
    z_loss: float = 0.0
    label_smoothing: float = 0.0


def resolve_backend(backend: Backend, device: torch.device) -> str:
    """``auto``: Triton on a CUDA device when Triton imports, plain torch otherwise."""
    if backend != "auto":
        return backend
    if device.type == "cuda":
        try:
            import triton  # noqa: F401
        except ImportError:
            return "torch"
        return "triton"
    return "torch"


def _chunk_logits(hidden: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """One chunk's raw logits in fp32 (computed in the inputs' dtype, as the model's head does)."""
    logits = hidden @ weight.T
    if bias is not None:
        logits += bias
    return logits.float() if logits.dtype != torch.float32 else logits


# -- the arithmetic on one chunk of logits, plain torch -------------------------------------------------------


def torch_row_stats(logits: torch.Tensor, targets: torch.Tensor, opts: LossOptions) -> tuple[torch.Tensor, torch.Tensor]:
    """Per row: ``(lse, loss)`` of raw fp32 ``logits`` ``[C, V]`` (soft-capped in place when asked)."""
    if opts.softcap:
        logits.div_(opts.softcap).tanh_().mul_(opts.softcap)
    lse = torch.logsumexp(logits, dim=-1)
    target_logit = logits.gather(1, targets[:, None]).squeeze(1)
    loss = lse - (1.0 - opts.label_smoothing) * target_logit
    if opts.label_smoothing:
        loss -= opts.label_smoothing * logits.mean(dim=-1)
    if opts.z_loss:
        loss += opts.z_loss * lse * lse
    return lse, loss


def torch_logits_grad(logits: torch.Tensor, targets: torch.Tensor, lse: torch.Tensor, scale: torch.Tensor,
                      opts: LossOptions) -> torch.Tensor:
    """Turn raw fp32 ``logits`` ``[C, V]`` into d(loss * scale)/d(raw logits), in place; return it."""
    capped = None
    if opts.softcap:
        logits.div_(opts.softcap).tanh_()
        capped = logits.clone()  # tanh(u / cap), for the soft-cap's derivative 1 - tanh^2
        logits.mul_(opts.softcap)
    grad = logits.sub_(lse[:, None]).exp_()  # softmax
    row_scale = scale * (1.0 + 2.0 * opts.z_loss * lse) if opts.z_loss else scale.expand_as(lse)
    grad.mul_(row_scale[:, None])
    rows = torch.arange(grad.size(0), device=grad.device)
    grad[rows, targets] -= (1.0 - opts.label_smoothing) * scale
    if opts.label_smoothing:
        grad.sub_(opts.label_smoothing / grad.size(1) * scale)
    if capped is not None:
        grad.mul_(capped.square_().neg_().add_(1.0))
    return grad


def _row_stats(backend: str, logits, targets, opts):
    if backend == "triton":
        from ft_kernels.triton_ops import triton_row_stats

        return triton_row_stats(logits, targets, opts)
    return torch_row_stats(logits, targets, opts)


def _logits_grad(backend: str, logits, targets, lse, scale, opts):
    if backend == "triton":
        from ft_kernels.triton_ops import triton_logits_grad

        return triton_logits_grad(logits, targets, lse, scale, opts)
    return torch_logits_grad(logits, targets, lse, scale, opts)


class _LinearCrossEntropy(torch.autograd.Function):
    """Sum of the token losses of the rows of ``hidden`` whose target is not ignored."""

    @staticmethod
    def forward(ctx, hidden, weight, bias, targets, opts: LossOptions, chunk_size: int, backend: str):  # type: ignore[override]
        trained = (targets != opts.ignore_index).nonzero().squeeze(1)
        kept_hidden = hidden.index_select(0, trained)
        kept_targets = targets.index_select(0, trained)
        lse = torch.empty(trained.numel(), dtype=torch.float32, device=hidden.device)
        total = torch.zeros((), dtype=torch.float32, device=hidden.device)
        for start in range(0, trained.numel(), chunk_size):
            rows = slice(start, start + chunk_size)
            logits = _chunk_logits(kept_hidden[rows], weight, bias)
            lse[rows], loss = _row_stats(backend, logits, kept_targets[rows], opts)
            total += loss.sum()
            del logits
        ctx.save_for_backward(kept_hidden, weight, bias, kept_targets, trained, lse)
        ctx.opts, ctx.chunk_size, ctx.backend, ctx.hidden_shape = opts, chunk_size, backend, hidden.shape
        return total

    @staticmethod
    def backward(ctx, grad_total):  # type: ignore[override]
        kept_hidden, weight, bias, kept_targets, trained, lse = ctx.saved_tensors
        opts, dtype = ctx.opts, kept_hidden.dtype
        want_hidden, want_weight, want_bias = ctx.needs_input_grad[:3]
        scale = grad_total.float()
        grad_hidden = torch.zeros(ctx.hidden_shape, dtype=dtype, device=kept_hidden.device) if want_hidden else None
        grad_weight = torch.zeros(weight.shape, dtype=torch.float32, device=weight.device) if want_weight else None
        grad_bias = torch.zeros(weight.size(0), dtype=torch.float32, device=weight.device) if want_bias else None
        for start in range(0, trained.numel(), ctx.chunk_size):
            rows = slice(start, start + ctx.chunk_size)
            chunk = kept_hidden[rows]
            logits = _chunk_logits(chunk, weight, bias)
            grad = _logits_grad(ctx.backend, logits, kept_targets[rows], lse[rows], scale, opts)
            if grad_bias is not None:
                grad_bias += grad.sum(0)
            grad = grad.to(dtype)
            if grad_hidden is not None:
                grad_hidden.index_copy_(0, trained[rows], grad @ weight)
            if grad_weight is not None:
                if dtype == torch.float32:
                    grad_weight.addmm_(grad.T, chunk)
                else:  # the product in the inputs' precision, the sum over chunks in fp32
                    grad_weight += (grad.T @ chunk).float()
            del logits, grad
        if grad_weight is not None:
            grad_weight = grad_weight.to(weight.dtype)
        if grad_bias is not None:
            grad_bias = grad_bias.to(bias.dtype)
        return grad_hidden, grad_weight, grad_bias, None, None, None, None


def linear_cross_entropy(hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor,
                         bias: torch.Tensor | None = None, *, ignore_index: int = IGNORE_INDEX,
                         softcap: float | None = None, z_loss: float = 0.0, label_smoothing: float = 0.0,
                         reduction: Literal["sum", "mean"] = "sum", chunk_size: int = 2048,
                         backend: Backend = "auto") -> torch.Tensor:
    """Cross entropy of ``hidden @ weight.T (+ bias)`` against ``targets``, never materialising the logits.

    ``hidden``: ``[..., H]``; ``weight``: ``[V, H]``; ``targets``: ``[...]`` (already aligned with
    ``hidden``: shift them first for next-token prediction), ``ignore_index`` where nothing is trained.
    ``reduction="sum"`` is the sum over trained tokens (divide it by ``num_items_in_batch`` yourself, as
    transformers does); ``"mean"`` divides by the number of trained tokens. With no trained token the
    result is a differentiable 0. ``chunk_size``: tokens per chunk (peak extra memory is about
    ``chunk_size * V * 4`` bytes, twice that with soft-capping in the backward).
    """
    if hidden.size(-1) != weight.size(1):
        raise ValueError(f"hidden size {hidden.size(-1)} does not match the head's {weight.size(1)}")
    if hidden.shape[:-1] != targets.shape:
        raise ValueError(f"targets {tuple(targets.shape)} do not match hidden states {tuple(hidden.shape[:-1])}")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be at least 1, got {chunk_size}")
    opts = LossOptions(ignore_index, softcap or None, float(z_loss), float(label_smoothing))
    flat_hidden = hidden.reshape(-1, hidden.size(-1))
    flat_targets = targets.reshape(-1)
    total = _LinearCrossEntropy.apply(flat_hidden, weight, bias, flat_targets, opts, chunk_size,
                                      resolve_backend(backend, hidden.device))
    if reduction == "mean":
        return total / (flat_targets != ignore_index).sum().clamp(min=1)
    if reduction != "sum":
        raise ValueError(f"reduction must be 'sum' or 'mean', got {reduction!r}")
    return total

