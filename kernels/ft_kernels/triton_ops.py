"""Triton kernels for the arithmetic on one chunk of logits (the GPU side of :mod:`ft_kernels.linear_ce`).

One program per row (token) walks the vocabulary in blocks: the forward kernel computes the row's
log-sum-exp online (running maximum and rescaled sum) and its loss; the backward kernel rewrites the row
of raw logits in place as the gradient of the scaled loss, so the chunk needs no second buffer. The
matrix products around them stay torch's (cuBLAS). Both are checked against the torch functions of
``linear_ce`` on the CPU under ``TRITON_INTERPRET=1``.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from ft_kernels.linear_ce import LossOptions

MAX_BLOCK = 4096


@triton.jit
def _tanh(x):
    """tanh from exp (the interpreter has no libdevice): sign(x) * (1 - e^-2|x|) / (1 + e^-2|x|)."""
    e = tl.exp(-2.0 * tl.abs(x))
    t = (1.0 - e) / (1.0 + e)
    return tl.where(x >= 0, t, -t)


@triton.jit
def _row_stats_kernel(logits_ptr, stride, targets_ptr, lse_ptr, loss_ptr, n_vocab, softcap, z_loss, smoothing,
                      HAS_SOFTCAP: tl.constexpr, BLOCK: tl.constexpr):
    row = tl.program_id(0).to(tl.int64)
    base = logits_ptr + row * stride
    running_max = tl.zeros([], dtype=tl.float32) - float("inf")
    running_sum = tl.zeros([], dtype=tl.float32)
    logit_sum = tl.zeros([], dtype=tl.float32)
    for start in range(0, n_vocab, BLOCK):
        cols = start + tl.arange(0, BLOCK)
        mask = cols < n_vocab
        z = tl.load(base + cols, mask=mask, other=0.0).to(tl.float32)
        if HAS_SOFTCAP:
            z = softcap * _tanh(z / softcap)
        z = tl.where(mask, z, float("-inf"))
        new_max = tl.maximum(running_max, tl.max(z, 0))
        running_sum = running_sum * tl.exp(running_max - new_max) + tl.sum(tl.exp(z - new_max), 0)
        running_max = new_max
        logit_sum += tl.sum(tl.where(mask, z, 0.0), 0)
    lse = running_max + tl.log(running_sum)
    target = tl.load(targets_ptr + row)
    z_target = tl.load(base + target).to(tl.float32)
    if HAS_SOFTCAP:
        z_target = softcap * _tanh(z_target / softcap)
    loss = lse - (1.0 - smoothing) * z_target - smoothing * logit_sum / n_vocab + z_loss * lse * lse
    tl.store(lse_ptr + row, lse)
    tl.store(loss_ptr + row, loss)


@triton.jit
def _logits_grad_kernel(logits_ptr, stride, targets_ptr, lse_ptr, scale_ptr, n_vocab, softcap, z_loss, smoothing,
                        HAS_SOFTCAP: tl.constexpr, BLOCK: tl.constexpr):
    row = tl.program_id(0).to(tl.int64)
    base = logits_ptr + row * stride
    lse = tl.load(lse_ptr + row)
    target = tl.load(targets_ptr + row)
    scale = tl.load(scale_ptr)
    row_scale = scale * (1.0 + 2.0 * z_loss * lse)
    for start in range(0, n_vocab, BLOCK):
        cols = start + tl.arange(0, BLOCK)
        mask = cols < n_vocab
        z = tl.load(base + cols, mask=mask, other=0.0).to(tl.float32)
        if HAS_SOFTCAP:
            capped = _tanh(z / softcap)
            z = softcap * capped
        grad = tl.exp(z - lse) * row_scale - scale * smoothing / n_vocab
        grad = tl.where(cols == target, grad - scale * (1.0 - smoothing), grad)
        if HAS_SOFTCAP:
            grad = grad * (1.0 - capped * capped)
        tl.store(base + cols, grad, mask=mask)


def _block(n_vocab: int) -> int:
    return min(triton.next_power_of_2(n_vocab), MAX_BLOCK)


def triton_row_stats(logits: torch.Tensor, targets: torch.Tensor, opts: LossOptions) -> tuple[torch.Tensor, torch.Tensor]:
    """Per row ``(lse, loss)`` of raw fp32 ``logits`` ``[C, V]`` (which are left as they are)."""
    rows, n_vocab = logits.shape
    lse = torch.empty(rows, dtype=torch.float32, device=logits.device)
    loss = torch.empty_like(lse)
    if rows:
        _row_stats_kernel[(rows,)](logits, logits.stride(0), targets.contiguous(), lse, loss, n_vocab,
                                   float(opts.softcap or 1.0), float(opts.z_loss), float(opts.label_smoothing),
                                   HAS_SOFTCAP=bool(opts.softcap), BLOCK=_block(n_vocab))
    return lse, loss


def triton_logits_grad(logits: torch.Tensor, targets: torch.Tensor, lse: torch.Tensor, scale: torch.Tensor,
                       opts: LossOptions) -> torch.Tensor:
    """Rewrite raw fp32 ``logits`` ``[C, V]`` in place as d(loss * scale)/d(raw logits); return them."""
    rows, n_vocab = logits.shape
    if rows:
        _logits_grad_kernel[(rows,)](logits, logits.stride(0), targets.contiguous(), lse.contiguous(),
                                     scale.reshape(1).float(), n_vocab, float(opts.softcap or 1.0),
                                     float(opts.z_loss), float(opts.label_smoothing),
                                     HAS_SOFTCAP=bool(opts.softcap), BLOCK=_block(n_vocab))
    return logits
