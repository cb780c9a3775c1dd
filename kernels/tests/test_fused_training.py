"""kernels=ft in real SFT runs: the same loss curve and the same trained weights as the method's own loss,
for full fine-tuning, LoRA, multipack and gradient accumulation; and its refusals."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ft.api import hookimpl
from ft.testing import run_ft, run_lifecycle, write_chat_rows


class LossRecorder:
    """Records every training batch's loss as the trainer receives it, and the trained weights at the end."""

    def __init__(self) -> None:
        self.losses: list[float] = []
        self.weights: dict[str, Any] = {}
        self.initial: dict[str, Any] = {}

    @hookimpl(wrapper=True)
    def loss(self, ctx: Any, call: Any):
        result = yield
        if call.training:
            self.losses.append(float(result.loss.detach()))
        return result

    @hookimpl
    def post_trainer_create(self, ctx: Any) -> None:
        self.initial = {n: p.detach().clone() for n, p in ctx.model.named_parameters() if p.requires_grad}

    @hookimpl
    def post_train(self, ctx: Any, metrics: dict[str, Any]) -> None:
        self.weights = {n: p.detach().clone() for n, p in ctx.model.named_parameters() if p.requires_grad}


def train(tiny_model_dir: Path, tmp_path: Path, name: str, extra: list[str]) -> LossRecorder:
    rows = write_chat_rows(tmp_path / "chat.jsonl", n=24)
    recorder = LossRecorder()
    run_lifecycle([f"model.name_or_path={tiny_model_dir}", "data=chat", f"data.path={rows}", "trainer.micro_batch_size=4",
                   "trainer.max_steps=5", "optim.lr=1e-3", "run.plot=false", "run.save_final_model=false", *extra],
                  tmp_path / name, recorder)
    return recorder


SETUPS = {
    "full": [],
    "lora": ["+adapter=lora"],
    "multipack": ["+packing=multipack", "data.sequence_len=128", "trainer.micro_batch_size=1"],
    "accumulation": ["trainer.gradient_accumulation_steps=3", "trainer.micro_batch_size=2"],
}


@pytest.mark.parametrize("setup", sorted(SETUPS))
def test_the_fused_loss_follows_the_methods_own_loss_curve(tiny_model_dir, tmp_path, setup):
    plain = train(tiny_model_dir, tmp_path, "plain", SETUPS[setup])
    fused = train(tiny_model_dir, tmp_path, "fused", [*SETUPS[setup], "+kernels=ft", "kernels.chunk_size=7"])
    assert len(plain.losses) == len(fused.losses) >= 5
    assert fused.losses == pytest.approx(plain.losses, abs=1e-4)
    moved = max((plain.weights[n] - w).abs().max().item() for n, w in plain.initial.items())
    assert moved > 1e-3  # it trained: the comparison is between moving weights, not two copies of the start
    assert plain.weights.keys() == fused.weights.keys() and plain.weights
    for name, weight in plain.weights.items():
        assert (fused.weights[name] - weight).abs().max().item() < 1e-4, name


def test_a_method_that_computes_its_own_logits_is_refused_at_validate(tmp_path):
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text('{"prompt": "1 + 1?", "chosen": "2", "rejected": "3"}\n' * 4)
    result = run_ft(["validate", "+kernels=ft", "+method=dpo", f"data.path={pairs}"])
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "ft: error: kernels=ft needs a method that is token_loss, but method=dpo is computes_own_logits, "
        "needs_reference; drop kernels=ft or choose another method")

