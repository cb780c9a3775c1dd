"""Sweeps driven by Hydra's own sweeper and launcher plugins (``ft run -m hydra/sweeper=optuna ...``).

ft-sweeps runs a plain grid (``a=1,2 b=x,y``) itself, in-process, after validating every job. When the command
selects a Hydra sweeper or launcher plugin (``hydra/sweeper=optuna``, ``hydra/launcher=submitit_slurm``
or ``submitit_local``), Hydra is the engine: ft hands it the overrides and a task function, Hydra's
sweeper chooses the jobs (Optuna's sampler proposes each trial from the previous results) and its
launcher runs them (in this process, or as Slurm / local submitit jobs). Each job is one ordinary ft
run in ``<sweep dir>/<job number>``; the task function returns the job's ``sweep.objective`` metric,
which is what Optuna optimises. The sweep summary is then built from the job folders, whoever ran them.

Before anything launches, ft validates the jobs it can foresee: every value of a choice, both ends of
an ``interval(...)``; a typo fails in a second, not after the first trial.
"""

from __future__ import annotations

import functools
import json
import math
import traceback
from pathlib import Path
from typing import Any

from ft.api import PRIMARY_CONFIG, ConfigError, FtUserError, Session, kernel_conf_dir, run_job, searchpath_override

SWEEPER_OVERRIDE = ("hydra/sweeper=", "+hydra/sweeper=", "hydra/launcher=", "+hydra/launcher=")


def uses_hydra_plugins(overrides: list[str]) -> bool:
    """Whether the command selects a Hydra sweeper or launcher plugin (then Hydra runs the sweep)."""
    return any(o.startswith(SWEEPER_OVERRIDE) for o in overrides)


def foreseeable_jobs(overrides: list[str]) -> list[list[str]]:
    """The override combinations to validate up front: each choice, and both ends of each interval."""
    import itertools

    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.core.override_parser.types import IntervalSweep

    ft_overrides = [o for o in overrides if not o.lstrip("+~").startswith("hydra")]
    try:
        parsed = OverridesParser.create().parse_overrides(ft_overrides)
    except Exception as exc:  # noqa: BLE001 - Hydra's parse errors become one line
        raise ConfigError(f"cannot parse overrides: {str(exc).strip().splitlines()[0]}") from exc
    axes: list[list[str]] = []
    for item, text in zip(parsed, ft_overrides):
        key = text.split("=", 1)[0]
        value = item.value()
        if isinstance(value, IntervalSweep):
            axes.append([f"{key}={value.start}", f"{key}={value.end}"])
        elif item.is_sweep_override():
            axes.append([f"{key}={v}" for v in item.sweep_string_iterator()])
        else:
            axes.append([text])
    return [list(combo) for combo in itertools.product(*axes)]


def check_objective(jobs: list[Any], overrides: list[str]) -> None:
    """Optuna needs a number to optimise: ``sweep.objective`` must name a final metric."""
    if any(o.lstrip("+").startswith("hydra/sweeper=optuna") for o in overrides) and not jobs[0].cfg.sweep.objective:
        raise ConfigError("hydra/sweeper=optuna optimises a final metric of each job: name it with "
                          "sweep.objective=... (eval_loss, task_accuracy_after, train_loss) and sweep.direction=minimize|maximize")


def run_sweep_job(p_flags: list[str], cfg: Any) -> float | None:
    """Hydra's task function: one ft run in the job's folder; returns its ``sweep.objective`` metric.

    Module-level (and bound with ``functools.partial``) so launchers that run jobs in other processes
    (submitit) can pickle it."""
    from hydra.core.hydra_config import HydraConfig

    hydra_cfg = HydraConfig.get()
    run_dir = Path(hydra_cfg.runtime.output_dir)
    try:
        session = Session(p_flags)
        job = session.prepare(session.normalise(list(hydra_cfg.overrides.task)))
        metrics = run_job(job, run_dir, p_flags)
        objective = job.cfg.sweep.objective
        if not objective:
            return None
        value = metrics.get(objective)
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
            known = ", ".join(sorted(k for k, v in metrics.items() if isinstance(v, (int, float))))
            raise ConfigError(f"sweep.objective={objective!r} is not a final metric of this run ({value!r}); "
                              f"final metrics: {known}")
        return float(value)
    except BaseException as exc:
        if run_dir.is_dir() and not (run_dir / "error.txt").exists():
            text = f"{exc}\n" if isinstance(exc, FtUserError) else traceback.format_exc()
            (run_dir / "error.txt").write_text(text)
        raise


def hydra_overrides(overrides: list[str], plugins: list[Any], sweep_dir: Path, jobs: list[Any]) -> list[str]:
    """The overrides Hydra composes with: the user's, the plugins' config folders, ft's folder layout."""
    kept = [o for o in overrides if not o.startswith(("hydra.sweep.dir=", "hydra.run.dir="))]
    extra = [searchpath_override(plugins), f"hydra.sweep.dir={sweep_dir}", "hydra.sweep.subdir=${hydra.job.num}",
             "hydra.output_subdir=null", "hydra/job_logging=none", "hydra/hydra_logging=none",
             "hydra.job.chdir=false"]
    optuna = any(o.lstrip("+").startswith("hydra/sweeper=optuna") for o in overrides)
    if optuna and not any(o.startswith("hydra.sweeper.direction=") for o in overrides):
        extra.append(f"hydra.sweeper.direction={jobs[0].cfg.sweep.direction}")
    return [*kept, *extra]


def run_with_hydra(session: Any, overrides: list[str], p_flags: list[str], sweep_dir: Path, jobs: list[Any]) -> str:
    """Run the sweep through Hydra's sweeper and launcher; returns an error line ("" when it completed)."""
    # Hydra's and its plugins' own lines ("Launching 2 jobs", Optuna's best value) on the console, without
    # Hydra configuring the root logger (which would print every ft line twice).
    import logging
    import sys

    from hydra._internal.hydra import Hydra
    from hydra._internal.utils import create_config_search_path
    from hydra.core.global_hydra import GlobalHydra

    console = logging.StreamHandler(sys.stderr)
    console.setFormatter(logging.Formatter("[hydra] %(message)s"))
    hydra_loggers = [logging.getLogger(name) for name in ("hydra", "hydra_plugins")]
    for logger in hydra_loggers:
        logger.addHandler(console)
        logger.setLevel(logging.INFO)
    GlobalHydra.instance().clear()
    hydra = Hydra.create_main_hydra2(task_name="ft", config_search_path=create_config_search_path(str(kernel_conf_dir())))
    try:
        hydra.multirun(config_name=PRIMARY_CONFIG, task_function=functools.partial(run_sweep_job, list(p_flags)),
                       overrides=hydra_overrides(overrides, session.plugins, sweep_dir, jobs),
                       with_log_configuration=False)
    except Exception as exc:  # noqa: BLE001 - a failed trial stops Hydra's sweeper; the summary still shows the rest
        return f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"
    finally:
        GlobalHydra.instance().clear()
        for logger in hydra_loggers:
            logger.removeHandler(console)
    return ""


def results_from_folders(sweep_dir: Path, JobResult: Any) -> list[Any]:  # noqa: N803 - the class to build
    """One :class:`ft_sweeps.plugin.JobResult` per numbered job folder, from what each run wrote."""
    results = []
    for folder in sorted((p for p in sweep_dir.iterdir() if p.is_dir() and p.name.isdigit()), key=lambda p: int(p.name)):
        record = json.loads((folder / "run.json").read_text()) if (folder / "run.json").is_file() else {}
        result = JobResult(run_dir=folder, overrides=record.get("overrides", []))
        if (folder / "summary.json").is_file():
            result.metrics = json.loads((folder / "summary.json").read_text())
        else:
            result.status = "failed"
            error = folder / "error.txt"
            result.error = error.read_text().strip().splitlines()[-1] if error.is_file() and error.read_text().strip() else ""
        results.append(result)
    return results
