"""The sweep summary's table and best job."""

from __future__ import annotations

from pathlib import Path

from ft_sweeps.plugin import JobResult
from ft_sweeps.summary import best_job, sweep_table


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
