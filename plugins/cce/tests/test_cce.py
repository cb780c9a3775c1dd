"""kernels=cce: Cut Cross Entropy's loss and gradients equal the plain computation, and SFT runs with it train
exactly like the method's own loss. On a CPU the library's torch_compile path is what runs (its Triton
``cce`` path needs a GPU and is checked there as well)."""

from __future__ import annotations

import pytest
import torch
from cut_cross_entropy import linear_cross_entropy

from ft.api import hookimpl
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


# -- the refusals the README promises -------------------------------------------------------------------


def test_impl_cce_without_a_gpu_is_one_line_before_the_model_loads(tiny_model_dir, tmp_path, capsys):
    import torch

    from ft.cli import main

    code = main(["run", f"model.name_or_path={tiny_model_dir}", "+kernels=cce", "kernels.impl=cce",
                 "trainer.max_steps=1", "run.save_final_model=false", f"run.root={tmp_path / 'runs'}"])
    if torch.cuda.is_available():  # a machine with a GPU runs CCE's Triton kernels
        assert code == 0
        return
    assert code == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        "ft: error: kernels.impl=cce runs Triton kernels and needs a GPU; use kernels.impl=auto or torch_compile here")


class HeadWithBias:
    """Gives the loaded model's output head a bias, as some architectures have."""

    @hookimpl
    def prepare_model(self, ctx):
        import torch

        head = ctx.model.get_output_embeddings()
        head.bias = torch.nn.Parameter(torch.zeros(head.out_features))


def test_a_head_with_a_bias_is_refused_at_start(tiny_model_dir, tmp_path):
    from ft.api import ConfigError
    from ft_testing import build_context, write_chat_rows

    rows = write_chat_rows(tmp_path / "chat.jsonl", n=8)
    with pytest.raises(ConfigError, match="takes an output head without a bias, and this model's head has one"):
        build_context([f"model.name_or_path={tiny_model_dir}", "data=chat", f"data.path={rows}", "+kernels=cce",
                       "kernels.impl=torch_compile"], tmp_path / "run", HeadWithBias())


def test_a_method_without_the_token_loss_is_refused_at_validate(capsys):
    from ft.cli import main

    assert main(["validate", "+kernels=cce", "+method=grpo"]) == 2
    assert capsys.readouterr().err.strip() == (
        "ft: error: kernels=cce needs a method that is token_loss, but method=grpo is computes_own_logits, "
        "generates; drop kernels=cce or choose another method")
