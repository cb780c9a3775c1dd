"""Packing through ``ft run``: same optimizer step as unpacked, resumable, reported, refused when wrong."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest
import torch

from ft import hookimpl
from ft_testing import run_ft, run_lifecycle

WORDS = ("apple", "river", "seven", "blue", "count", "sort", "number", "plus", "three", "green", "stone", "light")


def write_rows(path: Path, count: int, seed: int = 0) -> Path:
    """Chat rows of clearly different lengths (5 to 40 words a question)."""
    rng = random.Random(seed)
    with path.open("w") as handle:
        for _ in range(count):
            question = " ".join(rng.choice(WORDS) for _ in range(rng.randint(5, 40)))
            answer = " ".join(rng.choice(WORDS) for _ in range(rng.randint(2, 12)))
            handle.write(json.dumps({"messages": [{"role": "user", "content": question},
                                                  {"role": "assistant", "content": answer}]}) + "\n")
    return path


class Watch:
    """Keeps the trained weights, the trainer state and what the multipack plugin decided."""

    def __init__(self) -> None:
        self.weights: dict[str, torch.Tensor] = {}
        self.state: Any = None
        self.extras: dict[str, Any] = {}

    @hookimpl
    def post_train(self, ctx: Any, metrics: dict[str, Any]) -> None:
        self.weights = {name: p.detach().clone() for name, p in ctx.model.named_parameters()}
        self.state = ctx.trainer.state
        from ft_multipack.plugin import PackingState

        state = ctx.state(PackingState)
        self.extras = {**state.splits, "attention": state.attention}
        self.attention_after = ctx.model.config._attn_implementation


def sgd_args(model_dir: Path, data: Path, **overrides: Any) -> list[str]:
    """Plain SGD (Adam's first step hides the gradient's scale), no clipping, constant rate."""
    args = {
        "model.name_or_path": model_dir, "data": "chat", "data.path": data, "data.sequence_len": 256,
        "optim.name": "sgd", "optim.lr": 0.5, "optim.max_grad_norm": 0, "optim.warmup_steps": 0,
        "optim.scheduler": "constant", "optim.weight_decay": 0.0, "trainer.logging_steps": 1,
        "run.plot": "false", "run.save_final_model": "false",
    }
    args.update(overrides)
    return [f"{key}={value}" for key, value in args.items()]


def first_loss(run_dir: Path) -> float:
    for line in (run_dir / "metrics.jsonl").read_text().splitlines():
        record = json.loads(line)
        if "loss" in record:
            return float(record["loss"])
    raise AssertionError("no training loss logged")


@pytest.fixture(scope="module")
def twelve_rows(tmp_path_factory) -> Path:
    return write_rows(tmp_path_factory.mktemp("rows") / "rows.jsonl", 12)


@pytest.fixture(scope="module")
def unpacked_step(tiny_model_dir, twelve_rows, tmp_path_factory) -> tuple[Path, Watch]:
    """One optimizer step over all 12 rows: 4 micro-batches of 3 rows, gradient accumulation 4."""
    run_dir = tmp_path_factory.mktemp("runs") / "unpacked"
    watch = Watch()
    run_lifecycle(sgd_args(tiny_model_dir, twelve_rows, **{"trainer.micro_batch_size": 3,
                                                          "trainer.gradient_accumulation_steps": 4,
                                                          "trainer.max_steps": 1}), run_dir, watch)
    return run_dir, watch


@pytest.mark.parametrize("attention", ["per_row", "position_ids", "block_mask"])
@pytest.mark.parametrize("packs_per_batch", [1, 2])
def test_one_step_packed_equals_one_step_unpacked_with_accumulation(
        tiny_model_dir, twelve_rows, unpacked_step, tmp_path, attention, packs_per_batch):
    unpacked_dir, unpacked = unpacked_step
    watch = Watch()
    run_lifecycle([*sgd_args(tiny_model_dir, twelve_rows, **{"trainer.micro_batch_size": packs_per_batch,
                                                             "trainer.gradient_accumulation_steps": 16,
                                                             "trainer.max_steps": 1}),
                   "+packing=multipack", f"packing.attention={attention}"], tmp_path / "packed", watch)
    packs = watch.extras["train"]["packs"]
    assert 2 <= packs < 12  # rows really were packed, several per sequence, over several micro-batches
    assert watch.extras["attention"] == attention
    assert watch.attention_after == "sdpa"  # per_row is for training only
    assert watch.state.global_step == 1 and unpacked.state.global_step == 1
    assert watch.state.epoch == pytest.approx(1.0)  # the one step saw every row, as the unpacked step did
    assert first_loss(tmp_path / "packed") == pytest.approx(first_loss(unpacked_dir), abs=1e-5)
    moved = 0.0
    for name, weight in unpacked.weights.items():
        torch.testing.assert_close(watch.weights[name], weight, rtol=0, atol=1e-5)
    initial = {name: p for name, p in _initial_weights(tiny_model_dir).items()}
    moved = max(float((unpacked.weights[name] - initial[name]).abs().max()) for name in initial)
    assert moved > 1e-3  # the step changed the weights far more than the tolerance


def _initial_weights(model_dir: Path) -> dict[str, torch.Tensor]:
    from transformers import AutoModelForCausalLM

    return {name: p.detach() for name, p in AutoModelForCausalLM.from_pretrained(model_dir).named_parameters()}


def test_resuming_from_a_mid_epoch_checkpoint_ends_where_an_uninterrupted_run_ends(tiny_model_dir, tmp_path):
    rows = write_rows(tmp_path / "rows.jsonl", 48, seed=3)
    common = sgd_args(tiny_model_dir, rows, **{"trainer.micro_batch_size": 1, "trainer.max_steps": 5,
                                               "trainer.save_steps": 2, "trainer.save_total_limit": 5,
                                               "optim.lr": 0.2})
    straight = Watch()
    run_lifecycle([*common, "+packing=multipack"], tmp_path / "straight", straight)
    assert straight.extras["train"]["batches"] > 5  # step 2 is mid-epoch
    resumed = Watch()
    checkpoint = tmp_path / "straight" / "checkpoints" / "checkpoint-2"
    assert checkpoint.is_dir()
    run_lifecycle([*common, "+packing=multipack", f"run.resume_from={checkpoint}"], tmp_path / "resumed", resumed)
    assert resumed.state.global_step == 5
    for name, weight in straight.weights.items():
        torch.testing.assert_close(resumed.weights[name], weight, rtol=0, atol=1e-6)


def test_ft_run_reports_packing_and_trains_and_evaluates_packed(tiny_model_dir, tmp_path):
    rows = write_rows(tmp_path / "rows.jsonl", 64, seed=1)
    result = run_ft(["run", f"model.name_or_path={tiny_model_dir}", "data=chat", f"data.path={rows}",
                     "data.sequence_len=256", "data.val_size=8", "+packing=multipack", "trainer.micro_batch_size=2",
                     "trainer.max_steps=6", "trainer.logging_steps=1", "optim.lr=3e-3", f"run.root={tmp_path}",
                     "run.name=packed", "run.plot=false"])
    assert result.returncode == 0, result.stderr[-3000:]
    log = (tmp_path / "packed" / "ft.log").read_text()
    assert "packing (train): 56 rows -> " in log and "efficiency 0.9" in log and "optimizer steps per epoch" in log
    assert "packing (eval): 8 rows -> " in log
    assert "packing: attention=per_row (sdpa on each row's slice of a pack; model attention sdpa)" in log
    config = json.loads((tmp_path / "packed" / "model" / "config.json").read_text())
    assert "multipack" not in json.dumps(config)  # the saved model carries no trace of the training-only attention
    records = [json.loads(line) for line in (tmp_path / "packed" / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in records if "loss" in r]
    assert losses[-1] < losses[0]
    assert any("eval_loss" in r for r in records)
    from transformers import AutoModelForCausalLM

    AutoModelForCausalLM.from_pretrained(tmp_path / "packed" / "model")


def test_packing_a_preference_method_is_refused_before_anything_loads(tmp_path):
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text(json.dumps({"prompt": "2+2?", "chosen": "4", "rejected": "5"}) + "\n")
    result = run_ft(["validate", "+packing=multipack", "+method=dpo", f"data.path={pairs}"])
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (
        "ft: error: packing=multipack needs a method that is packable, but method=dpo is computes_own_logits, "
        "needs_reference; drop packing=multipack or choose another method")


def test_a_bad_packing_option_is_one_line(tmp_path):
    result = run_ft(["validate", "+packing=multipack", "packing.group_size=0"])
    assert result.returncode == 2
    assert result.stderr.strip() == "ft: error: packing.group_size=0 is not valid: expected at least 1 row"
