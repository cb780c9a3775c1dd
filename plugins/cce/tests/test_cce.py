"""kernels=cce: Cut Cross Entropy's loss and gradients equal the plain computation, and SFT runs with it train
exactly like the method's own loss. On a CPU the library's torch_compile path is what runs (its Triton
``cce`` path needs a GPU and is checked there as well)."""

from __future__ import annotations

import pytest
import torch
from cut_cross_entropy import linear_cross_entropy

from ft_testing import (
    LOSS_KERNEL_SETUPS,
    assert_linear_ce_matches,
    assert_same_training,
    linear_ce_case,
    run_ft,
    train_tiny_sft,
)

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
#: cce's own Triton kernels need a GPU (and do not run under Triton's interpreter); filter_eps=None is exact.
IMPLS = ["torch_compile"] + (["cce"] if DEVICE == "cuda" else [])


def cce(impl: str):
    extra = {"filter_eps": None} if impl == "cce" else {}
    return lambda h, w, t, **kw: linear_cross_entropy(h, w, t, reduction="sum", impl=impl, **extra, **kw)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("options", [{}, {"softcap": 4.0}], ids=["plain", "softcap"])
def test_loss_and_gradients_equal_the_plain_computation(impl, options):
    assert_linear_ce_matches(cce(impl), *linear_ce_case(device=DEVICE), **options)


@pytest.mark.parametrize("impl", IMPLS)
def test_an_all_ignored_batch_and_accumulated_gradients(impl):
    h, w, t = linear_ce_case(tokens=48, device=DEVICE)
    ignored = t.clone().fill_(-100)
    weight = w.clone().requires_grad_()
    zero = cce(impl)(h, weight, ignored)
    assert zero.item() == 0.0
    zero.backward()
    assert weight.grad is None or torch.count_nonzero(weight.grad) == 0
    from ft_testing import reference_linear_cross_entropy

    weight, ref_weight = w.clone().requires_grad_(), w.clone().requires_grad_()
    total = int((t != -100).sum())
    for part in (slice(0, 16), slice(16, 32), slice(32, 48)):
        (cce(impl)(h[part], weight, t[part]) / total).backward()
        (reference_linear_cross_entropy(h[part], ref_weight, t[part]) / total).backward()
    assert (weight.grad - ref_weight.grad).abs().max().item() < 1e-5


@pytest.mark.parametrize("setup", sorted(LOSS_KERNEL_SETUPS))
def test_sft_with_cce_trains_exactly_like_the_methods_own_loss(tiny_model_dir, tmp_path, setup):
    plain = train_tiny_sft(tiny_model_dir, tmp_path / "plain", LOSS_KERNEL_SETUPS[setup])
    fused = train_tiny_sft(tiny_model_dir, tmp_path / "cce", [*LOSS_KERNEL_SETUPS[setup], "+kernels=cce"])
    assert_same_training(plain, fused)


def test_bad_options_are_refused_at_validate():
    result = run_ft(["validate", "+kernels=cce", "kernels.filter_eps=tiny"])
    assert result.returncode == 2
    assert result.stderr.strip() == "ft: error: kernels.filter_eps=tiny is not valid: expected high, low, a number or null"
    result = run_ft(["validate", "+kernels=cce", "kernels.impl=fast"])
    assert result.returncode == 2 and "kernels.impl" in result.stderr and "torch_compile" in result.stderr
