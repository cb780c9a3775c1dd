"""kernels=ft in real SFT runs: the same loss at every batch and the same trained weights as the method's own
loss, for full fine-tuning, LoRA, multipack and gradient accumulation; and the refusals."""

from __future__ import annotations

import pytest

from ft_testing import LOSS_KERNEL_SETUPS, assert_same_training, run_ft, train_tiny_sft


@pytest.mark.parametrize("setup", sorted(LOSS_KERNEL_SETUPS))
def test_the_fused_loss_trains_exactly_like_the_methods_own(tiny_model_dir, tmp_path, setup):
    plain = train_tiny_sft(tiny_model_dir, tmp_path / "plain", LOSS_KERNEL_SETUPS[setup])
    fused = train_tiny_sft(tiny_model_dir, tmp_path / "fused",
                           [*LOSS_KERNEL_SETUPS[setup], "+kernels=ft", "kernels.chunk_size=7"])
    assert_same_training(plain, fused)


def test_qlora_trains_exactly_like_the_methods_own_loss(tiny_model_dir, tmp_path):
    qlora = ["+adapter=qlora", "adapter.r=4"]  # the head stays unquantised and frozen under the 4-bit base
    plain = train_tiny_sft(tiny_model_dir, tmp_path / "plain", qlora, steps=3)
    fused = train_tiny_sft(tiny_model_dir, tmp_path / "fused", [*qlora, "+kernels=ft", "kernels.recompute=true"], steps=3)
    assert_same_training(plain, fused)


def test_distillation_gets_the_logits_it_asks_for_and_the_same_training(tiny_model_dir, tmp_path):
    kd = ["+method=kd", f"method.teacher={tiny_model_dir}", "method.eval_kl=false"]  # kd wraps the loss, needs logits
    plain = train_tiny_sft(tiny_model_dir, tmp_path / "plain", kd, steps=3)
    fused = train_tiny_sft(tiny_model_dir, tmp_path / "fused", [*kd, "+kernels=ft"], steps=3)
    assert_same_training(plain, fused)


def test_a_method_that_computes_its_own_logits_is_refused_at_validate(tmp_path):
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text('{"prompt": "1 + 1?", "chosen": "2", "rejected": "3"}\n' * 4)
    result = run_ft(["validate", "+kernels=ft", "+method=dpo", f"data.path={pairs}"])
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "ft: error: kernels=ft needs a method that is token_loss, but method=dpo is computes_own_logits, "
        "needs_reference; drop kernels=ft or choose another method")


def test_a_head_that_lora_adapts_is_refused_before_training(tiny_model_dir, tmp_path):
    rows = tmp_path / "rows.jsonl"
    rows.write_text('{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}\n' * 8)
    result = run_ft(["run", f"model.name_or_path={tiny_model_dir}", "data=chat", f"data.path={rows}", "+adapter=lora",
                     "adapter.target_modules=[q_proj,lm_head]", "+kernels=ft", f"run.root={tmp_path / 'runs'}"])
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (
        "ft: error: kernels=ft computes the loss from the output head's weight, but the head is a peft.tuners.lora.layer.Linear (an adapter "
        "wraps it, or the model has no plain linear head); drop lm_head from the adapter's target_modules / "
        "modules_to_save, or drop kernels=ft")


def test_the_triton_backend_without_a_gpu_is_refused_before_the_model_loads(tiny_model_dir, tmp_path):
    import torch

    result = run_ft(["run", f"model.name_or_path={tiny_model_dir}", "+kernels=ft", "kernels.backend=triton",
                     "trainer.max_steps=2", f"run.root={tmp_path / 'runs'}"], env={"TRITON_INTERPRET": "0"})
    if torch.cuda.is_available():  # a machine with a GPU trains with it
        assert result.returncode == 0, result.stderr[-2000:]
        assert list((tmp_path / "runs").glob("*/model/model.safetensors"))
        return
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (
        "ft: error: kernels.backend=triton needs a GPU and Triton (or TRITON_INTERPRET=1 to run it, slowly, on the "
        "CPU); use kernels.backend=auto or torch here")
