"""Sweeps through Hydra's own plugins: Optuna proposes trials from results, submitit launches jobs as processes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ft_testing import run_ft, write_chat_rows


def tiny_args(model_dir: Path, root: Path) -> list[str]:
    data = write_chat_rows(root / "chat.jsonl")
    return [f"model.name_or_path={model_dir}", "data=chat", f"data.path={data}", "trainer.max_steps=4",
            "trainer.micro_batch_size=8", "optim.warmup_steps=0", "run.plot=false", "run.save_final_model=false",
            f"run.root={root}/runs", f"hydra.sweep.dir={root}/sweep"]


def job_summaries(sweep: Path) -> dict[int, dict]:
    return {int(p.name): json.loads((p / "summary.json").read_text()) for p in sweep.iterdir()
            if p.is_dir() and p.name.isdigit()}


@pytest.mark.slow
def test_an_optuna_sweep_of_three_trials_optimises_the_named_metric(tiny_model_dir, tmp_path):
    result = run_ft(["run", "-m", *tiny_args(tiny_model_dir, tmp_path), "hydra/sweeper=optuna",
                     "hydra.sweeper.n_trials=3", "hydra.sweeper.sampler.seed=7", "optim.lr=interval(1e-4,3e-2)",
                     "sweep.objective=train_loss", "sweep.direction=minimize"])
    assert result.returncode == 0, result.stderr[-3000:]
    sweep = tmp_path / "sweep"
    jobs = job_summaries(sweep)
    assert sorted(jobs) == [0, 1, 2]
    lrs = [json.loads((sweep / str(i) / "config.yaml").read_text().split("lr: ")[1].split()[0]) for i in range(3)]
    assert all(1e-4 <= lr <= 3e-2 for lr in lrs) and len(set(lrs)) == 3
    losses = {i: s["train_loss"] for i, s in jobs.items()}
    best = min(losses, key=losses.get)
    # Optuna's own record (the sweeper's optimization_results.yaml) and ft's summary agree on the best trial.
    import yaml

    optuna_record = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    assert optuna_record["best_value"] == pytest.approx(losses[best])
    assert optuna_record["best_params"]["optim.lr"] == pytest.approx(lrs[best])
    summary = json.loads((sweep / "summary.json").read_text())
    assert summary["best_job"] == best and summary["objective"] == "train_loss"
    table = (sweep / "summary.md").read_text()
    assert f"| {best} * " in table and f"* best train_loss (minimize): job {best}" in table
    assert "Sweep summary (3 jobs" in result.stdout


@pytest.mark.slow
def test_a_submitit_local_sweep_runs_each_job_in_its_own_process(tiny_model_dir, tmp_path):
    result = run_ft(["run", "-m", *tiny_args(tiny_model_dir, tmp_path), "hydra/launcher=submitit_local",
                     "hydra.launcher.timeout_min=10", "optim.lr=1e-3,3e-3", "sweep.objective=train_loss",
                     "sweep.direction=maximize"])
    assert result.returncode == 0, result.stderr[-3000:]
    sweep = tmp_path / "sweep"
    jobs = job_summaries(sweep)
    assert sorted(jobs) == [0, 1]
    # submitit ran them: one log folder per job, each written by a process other than ft's.
    logs = sorted((sweep / ".submitit").glob("*/*_log.out"))
    assert len(logs) == 2
    worst = max(jobs, key=lambda i: jobs[i]["train_loss"])
    assert json.loads((sweep / "summary.json").read_text())["best_job"] == worst  # maximize picks the highest
    assert "optim.lr" in (sweep / "summary.md").read_text()


def test_hydra_sweeps_are_validated_before_anything_launches(tiny_model_dir, tmp_path):
    args = tiny_args(tiny_model_dir, tmp_path)
    missing = run_ft(["run", "-m", *args, "hydra/sweeper=optuna", "optim.lr=interval(1e-4,1e-2)"])
    assert missing.returncode == 2 and "sweep.objective=" in missing.stderr.strip().splitlines()[-1]
    bad_end = run_ft(["run", "-m", *args, "hydra/sweeper=optuna", "optim.lr=interval(-1,1e-2)",
                      "sweep.objective=train_loss"])
    assert bad_end.returncode == 2 and "optim.lr=-1" in bad_end.stderr
    typo = run_ft(["run", "-m", *args, "hydra/launcher=submitit_local", "optim.lrr=1e-3,1e-2"])
    assert typo.returncode == 2 and "optim.lrr" in typo.stderr
    assert not (tmp_path / "sweep").exists()
