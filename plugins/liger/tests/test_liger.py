"""kernels=liger: Liger's fused linear cross entropy equals the plain computation, SFT runs with Liger's
patch train exactly like the method's own loss, the patch is undone when the run ends, and a machine
without a GPU is told in one line which parts are left out.

Without a GPU, Liger's kernels run under Triton's CPU interpreter (``TRITON_INTERPRET=1``, set before
Liger is imported): its fused linear cross entropy and RoPE run there, its RMSNorm and SwiGLU do not
(ft-liger leaves those out and says so)."""

from __future__ import annotations

import os

import pytest
import torch

if not torch.cuda.is_available():  # before Liger's Triton kernels are defined
    os.environ.setdefault("TRITON_INTERPRET", "1")

from liger_kernel.transformers.functional import liger_fused_linear_cross_entropy  # noqa: E402

from ft_testing import (  # noqa: E402
    LOSS_KERNEL_SETUPS,
    assert_linear_ce_matches,
    assert_same_training,
    build_tokenizer,
    linear_ce_case,
    run_ft,
    train_tiny_sft,
    write_chat_rows,
)

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


def liger(h, w, t, softcap=None, z_loss=0.0, label_smoothing=0.0):
    return liger_fused_linear_cross_entropy(h, w, t, reduction="sum", softcap=softcap, lse_square_scale=z_loss,
                                            label_smoothing=label_smoothing)


#: Liger's soft-capping kernel converts a Python float with ``.to``, which Triton's interpreter cannot run:
#: soft-capping is checked where a GPU is.
OPTIONS = {"plain": {}, "z_loss": {"z_loss": 1e-2}, "label_smoothing": {"label_smoothing": 0.1},
           **({"softcap": {"softcap": 4.0}} if DEVICE == "cuda" else {})}


@pytest.mark.parametrize("options", list(OPTIONS.values()), ids=list(OPTIONS))
def test_ligers_fused_loss_equals_the_plain_computation(options):
    assert_linear_ce_matches(liger, *linear_ce_case(device=DEVICE), **options)


@pytest.mark.slow  # four pairs of training runs: the full tier
@pytest.mark.parametrize("setup", sorted(LOSS_KERNEL_SETUPS))
def test_sft_with_liger_trains_exactly_like_the_methods_own_loss(tiny_model_dir, tmp_path, setup):
    plain = train_tiny_sft(tiny_model_dir, tmp_path / "plain", LOSS_KERNEL_SETUPS[setup])
    patched = train_tiny_sft(tiny_model_dir, tmp_path / "liger", [*LOSS_KERNEL_SETUPS[setup], "+kernels=liger"])
    assert_same_training(plain, patched)


def test_the_patch_is_undone_when_the_run_ends(tiny_model_dir, tmp_path):
    from transformers.models.llama import modeling_llama

    before = (modeling_llama.apply_rotary_pos_emb, modeling_llama.LlamaRMSNorm, modeling_llama.LlamaMLP)
    train_tiny_sft(tiny_model_dir, tmp_path / "liger", ["+kernels=liger", "kernels.rms_norm=true"], steps=1)
    assert (modeling_llama.apply_rotary_pos_emb, modeling_llama.LlamaRMSNorm, modeling_llama.LlamaMLP) == before


def test_without_a_gpu_one_line_names_the_parts_left_out(tiny_model_dir, tmp_path):
    rows = write_chat_rows(tmp_path / "rows.jsonl", n=8)
    result = run_ft(["run", f"model.name_or_path={tiny_model_dir}", "data=chat", f"data.path={rows}",
                     "trainer.max_steps=1", "run.plot=false", "+kernels=liger", f"run.root={tmp_path / 'runs'}"],
                    env={"TRITON_INTERPRET": "0"})
    assert result.returncode == 0, result.stderr
    if DEVICE == "cuda":
        assert "left out" not in result.stderr
        return
    lines = [line for line in result.stderr.splitlines() if "Triton cannot run" in line]
    assert lines == ["[ft] kernels=liger: no GPU here, so Triton cannot run Liger's fused_linear_cross_entropy, "
                     "rms_norm, rope, swiglu; they are left out and the model's own layers run (TRITON_INTERPRET=1 "
                     "runs fused_linear_cross_entropy and rope, slowly, on the CPU)"]
    quiet = run_ft(["run", f"model.name_or_path={tiny_model_dir}", "data=chat", f"data.path={rows}", "trainer.max_steps=1",
                    "run.plot=false", "+kernels=liger", "kernels.rms_norm=false", "kernels.swiglu=false",
                    f"run.root={tmp_path / 'runs'}"], env={"TRITON_INTERPRET": "1"})
    assert quiet.returncode == 0 and "Triton cannot run" not in quiet.stderr  # only parts that run here


def test_a_model_family_liger_does_not_know_is_refused_with_the_families_it_does(tmp_path):
    from transformers import GPT2Config, GPT2LMHeadModel

    model_dir = tmp_path / "gpt2"
    tokenizer = build_tokenizer(model_dir)
    GPT2LMHeadModel(GPT2Config(vocab_size=len(tokenizer), n_embd=32, n_layer=1, n_head=2)).save_pretrained(model_dir)
    rows = write_chat_rows(tmp_path / "rows.jsonl", n=8)
    result = run_ft(["run", f"model.name_or_path={model_dir}", "data=chat", f"data.path={rows}", "+kernels=liger",
                     f"run.root={tmp_path / 'runs'}"])
    assert result.returncode == 2
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("ft: error: kernels=liger has no kernels for model type 'gpt2'; it supports ")
    assert "llama" in last and last.endswith(": drop kernels=liger or use kernels=ft")
