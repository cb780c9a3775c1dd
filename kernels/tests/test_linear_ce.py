"""ft's fused linear cross entropy against the plain computation, ``F.cross_entropy(hidden @ W.T)``.

Both backends: plain torch, and the Triton kernels, which run under ``TRITON_INTERPRET=1`` (Triton's CPU
interpreter) when no GPU is present. Tolerances: 1e-5 in fp32 (relative on the loss, absolute on the
gradients of the mean loss); bf16 inputs against fp32 on the same bf16 numbers: 2e-2 relative on the loss,
and gradients within 2e-2 of the largest gradient (bf16 keeps 8 bits of mantissa).
"""

from __future__ import annotations

import os

import pytest
import torch

if not torch.cuda.is_available():  # before Triton's kernels are defined: they are interpreted on the CPU
    os.environ.setdefault("TRITON_INTERPRET", "1")

from ft_kernels.linear_ce import linear_cross_entropy  # noqa: E402
from ft_testing import assert_linear_ce_matches, linear_ce_case, reference_linear_cross_entropy  # noqa: E402

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
BACKENDS = ["torch", "triton"]


def case(**kw):
    return linear_ce_case(device=DEVICE, **kw)


def fused(backend: str, chunk_size: int = 16, recompute: bool = False):
    return lambda h, w, t, **kw: linear_cross_entropy(h, w, t, backend=backend, chunk_size=chunk_size,
                                                      recompute=recompute, **kw)


@pytest.mark.parametrize("recompute", [False, True], ids=["grads_in_forward", "recompute"])
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("options", [
    {}, {"softcap": 4.0}, {"z_loss": 1e-2}, {"label_smoothing": 0.1},
    {"softcap": 2.5, "z_loss": 1e-3, "label_smoothing": 0.2},
], ids=["plain", "softcap", "z_loss", "label_smoothing", "all"])
def test_loss_and_gradients_equal_the_plain_computation_in_fp32(backend, options, recompute):
    assert_linear_ce_matches(fused(backend, recompute=recompute), *case(), **options)


@pytest.mark.parametrize("options", [{}, {"softcap": 3.0, "z_loss": 1e-3, "label_smoothing": 0.1}], ids=["plain", "all"])
@pytest.mark.parametrize("vocab", [2 * 4096, 2 * 4096 + 809], ids=["two_whole_blocks", "a_partial_last_block"])
def test_the_triton_kernel_over_several_vocabulary_blocks(vocab, options):
    """The loop over vocabulary blocks that every GPU run takes (SmolLM2's 49,152 tokens are 12 blocks), with
    a vocabulary that is a multiple of the block and one that is not."""
    from ft_kernels import triton_ops

    assert vocab > triton_ops.MAX_BLOCK and triton_ops._block(vocab) == triton_ops.MAX_BLOCK
    assert_linear_ce_matches(fused("triton", chunk_size=8), *case(tokens=13, hidden=8, vocab=vocab), **options)


@pytest.mark.parametrize("backend", BACKENDS)
def test_every_chunk_size_gives_the_same_numbers(backend):
    h, w, t = case(tokens=40)
    for chunk_size in (1, 7, 40, 4096):
        for recompute in (False, True):
            assert_linear_ce_matches(fused(backend, chunk_size, recompute), h, w, t)


@pytest.mark.parametrize("backend", BACKENDS)
def test_an_all_ignored_batch_is_a_differentiable_zero(backend):
    h, w, t = case(tokens=9)
    t[:] = -100
    h.requires_grad_()
    w.requires_grad_()
    loss = linear_cross_entropy(h, w, t, backend=backend, reduction="mean")
    assert loss.item() == 0.0 and loss.requires_grad
    loss.backward()
    assert torch.count_nonzero(h.grad) == 0 and torch.count_nonzero(w.grad) == 0


@pytest.mark.parametrize("backend", BACKENDS)
def test_gradients_accumulate_over_micro_batches_like_the_plain_computation(backend):
    h, w, t = case(tokens=48)
    weight, ref_weight = w.clone().requires_grad_(), w.clone().requires_grad_()
    total = int((t != -100).sum())  # num_items_in_batch: the trained tokens of the whole step
    for index, part in enumerate((slice(0, 16), slice(16, 32), slice(32, 48))):
        fused_loss = linear_cross_entropy(h[part], weight, t[part], backend=backend, chunk_size=5, recompute=index == 1)
        (fused_loss / total).backward()
        (reference_linear_cross_entropy(h[part], ref_weight, t[part]) / total).backward()
    assert (weight.grad - ref_weight.grad).abs().max().item() < 1e-5


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_frozen_head_gets_no_gradient_and_the_hidden_states_still_do(backend):
    h, w, t = case()
    h.requires_grad_()
    linear_cross_entropy(h, w, t, backend=backend).backward()  # w: a LoRA or QLoRA base model's head
    assert w.grad is None and torch.count_nonzero(h.grad[1::3]) > 0
    assert torch.count_nonzero(h.grad[::3]) == 0  # ignored positions get exactly nothing


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_head_bias_and_three_dimensional_hidden_states(backend):
    h, w, t = case(tokens=24)
    bias = (torch.randn(w.size(0)) * 0.1).to(DEVICE).requires_grad_()
    hidden = h.reshape(2, 12, -1).requires_grad_()
    loss = linear_cross_entropy(hidden, w, t.reshape(2, 12), bias, backend=backend)
    loss.backward()
    ref_hidden, ref_bias = hidden.detach().clone().requires_grad_(), bias.detach().clone().requires_grad_()
    ref = reference_linear_cross_entropy(ref_hidden, w, t.reshape(2, 12), ref_bias)
    ref.backward()
    assert loss.item() == pytest.approx(ref.item(), rel=1e-5)
    assert (hidden.grad - ref_hidden.grad).abs().max().item() < 1e-5
    assert (bias.grad - ref_bias.grad).abs().max().item() < 1e-5


@pytest.mark.parametrize("recompute", [False, True], ids=["grads_in_forward", "recompute"])
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("options", [{}, {"softcap": 4.0}], ids=["plain", "softcap"])
def test_bf16_inputs_stay_within_the_documented_tolerance(backend, options, recompute):
    assert_linear_ce_matches(fused(backend, recompute=recompute), *case(dtype=torch.bfloat16), rel=2e-2,
                             grad_tol=2e-2, **options)


@pytest.mark.parametrize("backend", BACKENDS)
def test_without_gradients_the_loss_alone_is_computed(backend):
    h, w, t = case()
    with torch.no_grad():
        loss = linear_cross_entropy(h, w, t, backend=backend)
    assert loss.item() == pytest.approx(reference_linear_cross_entropy(h, w, t).item(), rel=1e-5)


def test_bad_shapes_and_options_say_what_is_wrong():
    h, w, t = case(tokens=8)
    with pytest.raises(ValueError, match="hidden size 24 does not match the head's 23"):
        linear_cross_entropy(h, w[:, :23], t)
    with pytest.raises(ValueError, match=r"targets \(7,\) do not match hidden states \(8,\)"):
        linear_cross_entropy(h, w, t[:7])
    with pytest.raises(ValueError, match="reduction must be 'sum' or 'mean'"):
        linear_cross_entropy(h, w, t, reduction="none")
