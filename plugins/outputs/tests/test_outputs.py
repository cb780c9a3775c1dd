"""The model card from a run folder's records, and the sweep summary's table and best job."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from ft.api import JobResult
from ft_outputs.card import write_model_card
from ft_outputs.sweep import best_job, sweep_table


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


def results() -> list[JobResult]:
    return [JobResult(Path("s/0"), ["optim.lr=1e-3", "adapter.r=8"], metrics={"train_loss": 0.9}),
            JobResult(Path("s/1"), ["optim.lr=3e-3", "adapter.r=8"], metrics={"train_loss": 0.4}),
            JobResult(Path("s/2"), ["optim.lr=1e-2", "adapter.r=8"], status="failed", error="RuntimeError: boom"),
            JobResult(Path("s/3"), ["optim.lr=3e-2", "adapter.r=8"], metrics={"train_loss": float("nan")})]


def test_the_best_job_follows_the_direction_and_skips_failed_and_nan_jobs():
    assert best_job(results(), "train_loss", "minimize") == 1
    assert best_job(results(), "train_loss", "maximize") == 0
    assert best_job(results(), "eval_loss") is None and best_job(results(), None) is None


def test_the_table_shows_what_varied_and_marks_the_best():
    table = sweep_table(results(), "train_loss").splitlines()
    assert table[0].split("|")[1:4] == [" job ", " optim.lr ", " status "]  # adapter.r never varied
    assert table[3].startswith("| 1 *") and "0.4" in table[3]
    assert "failed" in table[4]
