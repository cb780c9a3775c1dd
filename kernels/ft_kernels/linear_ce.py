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


def torch_row_stats(logits: torch.Tensor, targets: torch.Tensor, opts: LossOptions,
                    keep_probs: bool = False) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Per row ``(lse, loss, capped)`` of raw fp32 ``logits`` ``[C, V]``, which are overwritten: with the
    softmax when ``keep_probs`` (and ``capped`` = tanh(u / cap) under soft-capping, for its derivative)."""
    capped = None
    if opts.softcap:
        logits.div_(opts.softcap).tanh_()
        capped = logits.clone() if keep_probs else None
        logits.mul_(opts.softcap)
    target_logit = logits.gather(1, targets[:, None]).squeeze(1)
    mean_logit = logits.mean(dim=-1) if opts.label_smoothing else None
    row_max = logits.amax(dim=-1)
    exps = logits.sub_(row_max[:, None]).exp_()  # in place: no second chunk-sized buffer
    row_sum = exps.sum(dim=-1)
    lse = row_max + row_sum.log()
    loss = lse - (1.0 - opts.label_smoothing) * target_logit
    if mean_logit is not None:
        loss -= opts.label_smoothing * mean_logit
    if opts.z_loss:
        loss += opts.z_loss * lse * lse
    if keep_probs:
        exps.div_(row_sum[:, None])
    return lse, loss, capped


def torch_grad_from_probs(probs: torch.Tensor, targets: torch.Tensor, lse: torch.Tensor, scale: torch.Tensor,
                          opts: LossOptions, capped: torch.Tensor | None) -> torch.Tensor:
    """Turn a chunk's softmax ``probs`` into d(loss * scale)/d(raw logits), in place; return it."""
    row_scale = scale * (1.0 + 2.0 * opts.z_loss * lse) if opts.z_loss else scale.expand_as(lse)
    grad = probs.mul_(row_scale[:, None])
    rows = torch.arange(grad.size(0), device=grad.device)
    grad[rows, targets] -= (1.0 - opts.label_smoothing) * scale
    if opts.label_smoothing:
        grad.sub_(opts.label_smoothing / grad.size(1) * scale)
    if capped is not None:
        grad.mul_(capped.square_().neg_().add_(1.0))
    return grad


def torch_logits_grad(logits: torch.Tensor, targets: torch.Tensor, lse: torch.Tensor, scale: torch.Tensor,
                      opts: LossOptions) -> torch.Tensor:
    """Turn raw fp32 ``logits`` ``[C, V]`` into d(loss * scale)/d(raw logits), in place, from the saved ``lse``."""
    capped = None
    if opts.softcap:
        logits.div_(opts.softcap).tanh_()
        capped = logits.clone()
        logits.mul_(opts.softcap)
    return torch_grad_from_probs(logits.sub_(lse[:, None]).exp_(), targets, lse, scale, opts, capped)


def _row_stats(backend: str, logits, targets, opts):
    """``(lse, loss)``; ``logits`` may be overwritten."""
    if backend == "triton":
        from ft_kernels.triton_ops import triton_row_stats

        return triton_row_stats(logits, targets, opts)
    return torch_row_stats(logits, targets, opts)[:2]


def _stats_and_grad(backend: str, logits, targets, opts):
    """``(lse, loss, grad)`` with ``grad`` = d(loss)/d(raw logits), written over ``logits``."""
    one = torch.ones((), dtype=torch.float32, device=logits.device)
    if backend == "triton":
        from ft_kernels.triton_ops import triton_logits_grad, triton_row_stats

        lse, loss = triton_row_stats(logits, targets, opts)
        return lse, loss, triton_logits_grad(logits, targets, lse, one, opts)
    lse, loss, capped = torch_row_stats(logits, targets, opts, keep_probs=True)
    return lse, loss, torch_grad_from_probs(logits, targets, lse, one, opts, capped)


def _logits_grad(backend: str, logits, targets, lse, scale, opts):
    if backend == "triton":
        from ft_kernels.triton_ops import triton_logits_grad

        return triton_logits_grad(logits, targets, lse, scale, opts)
    return torch_logits_grad(logits, targets, lse, scale, opts)


class _Grads:
    """The gradient buffers of one call: hidden states ``[N, H]``, head weight (fp32 sums) and bias."""

    def __init__(self, wants: tuple[bool, bool, bool], hidden_shape, dtype, weight, device) -> None:
        self.hidden = torch.zeros(hidden_shape, dtype=dtype, device=device) if wants[0] else None
        self.weight = torch.zeros(weight.shape, dtype=torch.float32, device=device) if wants[1] else None
        self.bias = torch.zeros(weight.size(0), dtype=torch.float32, device=device) if wants[2] else None

    def add_chunk(self, grad: torch.Tensor, chunk: torch.Tensor, rows: torch.Tensor, weight: torch.Tensor) -> None:
        """Multiply one chunk's logits gradient (fp32 ``[C, V]``) into the three gradients."""
        if self.bias is not None:
            self.bias += grad.sum(0)
        grad = grad.to(chunk.dtype)
        if self.hidden is not None:
            self.hidden.index_copy_(0, rows, grad @ weight)
        if self.weight is not None:
            if chunk.dtype == torch.float32:
                self.weight.addmm_(grad.T, chunk)
            else:  # the product in the inputs' precision, the sum over chunks in fp32
                self.weight += (grad.T @ chunk).float()


class _LinearCrossEntropy(torch.autograd.Function):
    """Sum of the token losses of the rows of ``hidden`` whose target is not ignored.

    ``recompute=False`` (with gradients wanted): the gradients are computed in the forward, chunk by
    chunk, from the softmax already at hand, and only scaled in the backward (three matrix products a
    chunk, like the naive loss). ``recompute=True``: the forward keeps only each row's log-sum-exp and
    the backward recomputes every chunk's logits (four products; nothing but the lse between the two).
    Both hold one chunk of logits at a time.
    """

    @staticmethod
    def forward(ctx, hidden, weight, bias, targets, opts: LossOptions, chunk_size: int, backend: str,
                wants: tuple[bool, bool, bool], recompute: bool):
        trained = (targets != opts.ignore_index).nonzero().squeeze(1)
        kept_hidden = hidden.index_select(0, trained)
        kept_targets = targets.index_select(0, trained)
        lse = torch.empty(trained.numel(), dtype=torch.float32, device=hidden.device)
        total = torch.zeros((), dtype=torch.float32, device=hidden.device)
        eager = any(wants) and not recompute
        grads = _Grads(wants, hidden.shape, hidden.dtype, weight, hidden.device) if eager else None
        for start in range(0, trained.numel(), chunk_size):
            rows = slice(start, start + chunk_size)
            logits = _chunk_logits(kept_hidden[rows], weight, bias)
            if grads is not None:
                lse[rows], loss, grad = _stats_and_grad(backend, logits, kept_targets[rows], opts)
                grads.add_chunk(grad, kept_hidden[rows], trained[rows], weight)
                del grad  # the chunk's buffer: free before the next chunk's logits
            else:
                lse[rows], loss = _row_stats(backend, logits, kept_targets[rows], opts)
            total += loss.sum()
            del logits
        ctx.grads = grads
        ctx.save_for_backward(*([] if eager else [kept_hidden, weight, bias, kept_targets, trained, lse]))
        ctx.opts, ctx.chunk_size, ctx.backend, ctx.hidden_shape, ctx.wants = opts, chunk_size, backend, hidden.shape, wants
        ctx.param_dtypes = (weight.dtype, bias.dtype if bias is not None else None)
        return total

    @staticmethod
    def backward(ctx, grad_total):
        scale = grad_total.float()
        if ctx.grads is not None:  # computed in the forward: scale them by the incoming gradient
            grads, ctx.grads = ctx.grads, None
            return (*_scaled(grads, ctx.param_dtypes, scale), None, None, None, None, None, None)
        kept_hidden, weight, bias, kept_targets, trained, lse = ctx.saved_tensors
        grads = _Grads(ctx.wants, ctx.hidden_shape, kept_hidden.dtype, weight, kept_hidden.device)
        for start in range(0, trained.numel(), ctx.chunk_size):
            rows = slice(start, start + ctx.chunk_size)
            logits = _chunk_logits(kept_hidden[rows], weight, bias)
            grad = _logits_grad(ctx.backend, logits, kept_targets[rows], lse[rows], scale, ctx.opts)
            grads.add_chunk(grad, kept_hidden[rows], trained[rows], weight)
            del logits, grad
        return (*_scaled(grads, ctx.param_dtypes, None), None, None, None, None, None, None)


def _scaled(grads: _Grads, dtypes: tuple, scale: torch.Tensor | None) -> list:
    """The three gradients in their parameters' dtypes, times ``scale`` when given."""
    out = []
    for grad, dtype in ((grads.hidden, None), (grads.weight, dtypes[0]), (grads.bias, dtypes[1])):
        if grad is not None and scale is not None:
            grad = grad.mul_(scale.to(grad.dtype))
        out.append(grad.to(dtype) if grad is not None and dtype is not None else grad)
    return out


def linear_cross_entropy(hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor,
                         bias: torch.Tensor | None = None, *, ignore_index: int = IGNORE_INDEX,
                         softcap: float | None = None, z_loss: float = 0.0, label_smoothing: float = 0.0,
                         reduction: Literal["sum", "mean"] = "sum", chunk_size: int = 1024,
                         backend: Backend = "auto", recompute: bool = False) -> torch.Tensor:
    """Cross entropy of ``hidden @ weight.T (+ bias)`` against ``targets``, never materialising the logits.

    ``hidden``: ``[..., H]``; ``weight``: ``[V, H]``; ``targets``: ``[...]`` (already aligned with
    ``hidden``: shift them first for next-token prediction), ``ignore_index`` where nothing is trained.
    ``reduction="sum"`` is the sum over trained tokens (divide it by ``num_items_in_batch`` yourself, as
    transformers does); ``"mean"`` divides by the number of trained tokens. With no trained token the
    result is a differentiable 0. ``chunk_size``: tokens per chunk (peak extra memory is about
    ``chunk_size * V * 4`` bytes, twice that with soft-capping, plus the head's fp32 gradient).
    ``recompute``: compute the gradients in the backward from recomputed logits (four matrix products
    instead of three) rather than in the forward, when gradients are wanted at all.
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
    wants = (hidden.requires_grad, weight.requires_grad, bias is not None and bias.requires_grad)
    wants = wants if torch.is_grad_enabled() else (False, False, False)
    total = _LinearCrossEntropy.apply(flat_hidden, weight, bias, flat_targets, opts, chunk_size,
                                      resolve_backend(backend, hidden.device), wants, recompute)
    if reduction == "mean":
        return total / (flat_targets != ignore_index).sum().clamp(min=1)
    if reduction != "sum":
        raise ValueError(f"reduction must be 'sum' or 'mean', got {reduction!r}")
    return total

