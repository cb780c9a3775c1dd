"""ft-sweeps: ``ft run -m``, run as a grid by ft or by Hydra's sweeper and launcher plugins.

Every job ft can foresee is composed and validated before the first one starts, so a typo in the last
combination fails in a second, not after hours of training. A plain grid (``a=1,2 b=x,y``) runs here, one
job after another, each an ordinary run in ``<sweep dir>/<job number>``; a command that selects a Hydra
sweeper or launcher (``hydra/sweeper=optuna``, ``hydra/launcher=submitit_slurm``) hands the jobs to Hydra
(:mod:`ft_sweeps.hydra_sweep`). Either way the sweep ends with its summary (``summary.md``, ``summary.json``,
``summary.png``; :mod:`ft_sweeps.summary`) and the ``post_sweep`` hook of every installed plugin.
"""

from __future__ import annotations

import sys
import traceback
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from ft.api import CONTRACT_VERSION, FtUserError, PluginInfo, claim_run_dir, hookimpl, run_job, validate_all
from ft_sweeps import hookspecs

FT_PLUGIN = PluginInfo(
    name="sweeps",
    description="ft run -m: a grid, or Hydra's sweepers and launchers; one folder a job, then a summary",
    hookspecs=hookspecs,
    contract=CONTRACT_VERSION,
)


@dataclass
class JobResult:
    """What one job of a sweep produced: its folder, overrides, status ("ok", "failed", "user-error")."""

    run_dir: Path | None
    overrides: list[str]
    status: str = "ok"
    error: str = ""
    metrics: dict[str, Any] = field(default_factory=dict)


def sweep_folder(overrides: list[str], jobs: list[Any]) -> Path:
    """``hydra.sweep.dir`` when given (Hydra's own override keeps working), else ``<run.root>/sweep-<time>``."""
    given = [o.split("=", 1)[1] for o in overrides if o.startswith("hydra.sweep.dir=")]
    return Path(given[-1]) if given else Path(jobs[0].cfg.run.root) / f"sweep-{datetime.now():%Y-%m-%d_%H-%M-%S}"


def run_grid(jobs: list[Any], sweep_dir: Path, p_flags: list[str]) -> list[JobResult]:
    """Each validated job in turn; a failed job is recorded and the sweep goes on."""
    results = []
    for index, job in enumerate(jobs):
        job_dir = sweep_dir / str(index)
        result = JobResult(run_dir=job_dir, overrides=job.composed.overrides)
        results.append(result)
        try:
            result.metrics = run_job(job, job_dir, p_flags)
        except FtUserError as exc:
            result.status, result.error = "user-error", str(exc)
            print(f"ft: error: job {index}: {exc}", file=sys.stderr)
        except Exception as exc:  # noqa: BLE001 - a crashed job is reported, the sweep goes on
            result.status, result.error = "failed", f"{type(exc).__name__}: {exc}"
            traceback.print_exc()
            if job_dir.is_dir():
                (job_dir / "error.txt").write_text(traceback.format_exc())
    return results


@hookimpl(trylast=True)
def run_sweep(session: Any, overrides: list[str], p_flags: list[str]) -> int:
    from ft_sweeps import hydra_sweep as hydra
    from ft_sweeps.summary import print_sweep_summary

    with_hydra = hydra.uses_hydra_plugins(overrides)
    if with_hydra:  # Hydra's sweeper chooses the jobs: validate the ones ft can foresee
        normalised = session.normalise(overrides)
        jobs = [session.prepare(combo) for combo in hydra.foreseeable_jobs(normalised)]
        hydra.check_objective(jobs, overrides)
    else:
        normalised, jobs = validate_all(session, overrides, multirun=True)
    sweep_dir = sweep_folder(overrides, jobs)
    claim_run_dir(sweep_dir)
    objective, direction = jobs[0].cfg.sweep.objective, jobs[0].cfg.sweep.direction
    stopped = ""
    if with_hydra:
        stopped = hydra.run_with_hydra(session, normalised, p_flags, sweep_dir, jobs)
        results = hydra.results_from_folders(sweep_dir, JobResult)
        if stopped:
            print(f"ft: error: the sweep stopped: {stopped}", file=sys.stderr)
    else:
        results = run_grid(jobs, sweep_dir, p_flags)
    print_sweep_summary(results, sweep_dir, objective, direction)
    session.pm_all.hook.post_sweep(sweep_dir=sweep_dir, results=results, objective=objective, direction=direction)
    return 1 if stopped or any(r.status != "ok" for r in results) else 0
