"""The model card from a run folder's records."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from ft_outputs.card import write_model_card


def fake_run(run_dir: Path) -> Path:
    """A run folder's records as ft writes them, for an adapter run."""
    run_dir.mkdir()
    config = {"seed": 7, "optim": {"lr": 1e-3, "name": "adamw_torch", "scheduler": "cosine", "warmup_steps": 5},
              "trainer": {"micro_batch_size": 8, "max_steps": 60}, "data": {"sequence_len": 128},
              "model": {"name_or_path": "builtin:smollm2-135m-instruct"},
              "adapter": {"name": "myadapter", "r": 16, "alpha": 32, "targets": ["q_proj", "v_proj"]},
              "method": {"name": "sft"}}
    (run_dir / "config.yaml").write_text(yaml.safe_dump(config))
    (run_dir / "run.json").write_text(json.dumps({"command": "ft run +adapter=myadapter", "choices": {
        "method": "sft", "adapter": "myadapter", "data": "default_task"}, "plugins": [], "packages": {}}))
    (run_dir / "summary.json").write_text(json.dumps({"train_loss": 0.5, "task_accuracy_after": 0.69}))
    return run_dir


def test_the_card_lists_the_kernels_hyperparameters_and_the_selected_options_own(tmp_path):
    card = write_model_card(tmp_path / "model", fake_run(tmp_path / "run")).read_text()
    assert "base_model: HuggingFaceTB/SmolLM2-135M-Instruct" in card
    assert "| learning rate | 0.001 |" in card and "| micro batch size | 8 |" in card and "| seed | 7 |" in card
    assert "| adapter.r | 16 |" in card and "| adapter.alpha | 32 |" in card
    assert "adapter.name" not in card and "adapter.targets" not in card  # the option's name; not a scalar
    assert "| task_accuracy_after | 0.69 |" in card and "ft run +adapter=myadapter" in card
