"""From a command line to runs: :func:`prepare_run` once per job, then the lifecycle.

``prepare_run`` is the one path from overrides to a ready run (compose once, validate, activate the
selected plugins, build their plugin manager); ``ft run``, ``ft preprocess``, the testing helpers
and every multirun job use it. Every job of a multirun is composed and validated before the first
one starts, so a typo in the last combination fails in a second rather than after hours of
training. Each job gets its own folder and the sweep ends with a summary table of overrides and final
metrics (``summary.md``, ``summary.json`` and ``summary.png`` in the sweep folder).
"""

from __future__ import annotations

import logging
import sys
import traceback
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from ft.config import Composed, compose, expand_sweeps, normalise_overrides
from ft.context import RunContext
from ft.errors import FtUserError
from ft.launch import check_launch_config, run_job
from ft.plugins import (
    LoadedPlugin,
    active_plugins,
    discover,
    make_plugin_manager,
    merge_contributions,
    selected_traits,
    skipped_loss_wrappers,
)


def registry_names(schemas: dict[str, type]) -> set[str]:
    """The registries (collected hooks) that ``named(registry=...)`` fields of these schemas refer to,
    nested schemas (``list[DatasetConfig]``) included."""
    import dataclasses
    import typing

    names: set[str] = set()
    pending, seen = list(schemas.values()), set()
    while pending:
        schema = pending.pop()
        if schema in seen:
            continue
        seen.add(schema)
        hints = typing.get_type_hints(schema)
        for fld in dataclasses.fields(schema):
            if fld.metadata.get("registry"):
                names.add(fld.metadata["registry"])
            stack = [hints[fld.name]]
            while stack:
                tp = stack.pop()
                if isinstance(tp, type) and dataclasses.is_dataclass(tp):
                    pending.append(tp)
                stack.extend(typing.get_args(tp))
    return names


class Session:
    """The installed plugins, their schemas and registries, discovered once per ``ft`` invocation."""

    def __init__(self, p_flags: list[str] | None = None) -> None:
        from ft.schema import KERNEL_SCHEMAS

        found = discover(p_flags)
        found.raise_if_broken()
        self.plugins: list[LoadedPlugin] = found.usable
        self.disabled: list[LoadedPlugin] = found.disabled
        self.broken: list[LoadedPlugin] = found.broken
        self.pm_all = make_plugin_manager(self.plugins)
        self.schemas: dict[str, type] = merge_contributions(
            [KERNEL_SCHEMAS, *self.pm_all.hook.config_schemas()], "config_schemas", same=lambda a, b: a is b)
        self.registries: dict[str, set[str]] = {name: set(self.registry(name)) for name in registry_names(self.schemas)}

    def registry(self, name: str) -> dict[str, Any]:
        """The merged result of the collected hook ``name`` over every installed plugin (``dataset_formats``);
        empty when no installed plugin defines that hook."""
        hook = getattr(self.pm_all.hook, name, None)
        return merge_contributions(hook(), name, same=lambda a, b: a is b) if hook is not None else {}

    def plugin_defaults(self, choices: dict[str, str | None], config: dict[str, Any]) -> dict[str, Any]:
        """The ``config_defaults`` of the plugins these choices activate, merged (one key, one value)."""
        active = {p.module for p in active_plugins(self.plugins, choices)}
        inactive = [p.module for p in self.plugins if p.module not in active]
        hook = self.pm_all.subset_hook_caller("config_defaults", remove_plugins=inactive)
        return merge_contributions(hook(choices=choices, config=config), "config_defaults")

    def normalise(self, overrides: list[str]) -> list[str]:
        return normalise_overrides(overrides, self.plugins, self.disabled, self.broken)

    def prepare(self, overrides: list[str], spies: tuple[object, ...] = ()) -> PreparedRun:
        """One job from its normalised overrides: compose once, activate the plugins it selects, build
        their plugin manager and run their ``validate_config`` hooks. ``spies`` are extra plugin objects
        registered afterwards, for this run only (tests watch the lifecycle with them)."""
        composed = compose(overrides, self.plugins, self.schemas, self.registries, self.plugin_defaults)
        active = active_plugins(self.plugins, composed.choices)
        # Every installed plugin's own hooks exist in the run, selected or not (a rewards-only plugin is active
        # through its option while the plugin defining reward_functions may not be).
        pm = make_plugin_manager(active, [p.info.hookspecs for p in self.plugins if p.info.hookspecs is not None])
        pm.hook.validate_config(cfg=composed.cfg, choices=composed.choices)
        check_launch_config(composed.cfg)
        for index, spy in enumerate(spies):
            if spy is not None:
                pm.register(spy, name=f"spy-{index}")
        return PreparedRun(self, composed, active, pm)


@dataclass
class PreparedRun:
    """A validated job, ready for the lifecycle: its config, active plugins and their plugin manager."""

    session: Session
    composed: Composed
    active: list[LoadedPlugin]
    pm: Any

    @property
    def cfg(self) -> Any:
        return self.composed.cfg

    @property
    def choices(self) -> dict[str, str | None]:
        return self.composed.choices

    def context(self, run_dir: Path, ranks: Any = None) -> RunContext:
        """A fresh :class:`RunContext` for this run in ``run_dir``."""
        from ft.distributed import ranks_from_env

        ranks = ranks or ranks_from_env()
        traits = selected_traits(self.active, self.composed.choices)
        method_traits = traits.get(f"method/{self.composed.choices.get('method')}", ())
        skipped = skipped_loss_wrappers(self.active, method_traits)
        loss_hook = self.pm.subset_hook_caller("loss", [p.module for p in skipped]) if skipped else self.pm.hook.loss
        for plugin in skipped:
            logging.getLogger("ft").info(
                "plugin '%s': its loss wrapper is not called, method=%s is not %s (PluginInfo.loss_wrapper_traits)",
                plugin.name, self.composed.choices.get("method"), " and ".join(plugin.info.loss_wrapper_traits))
        return RunContext(cfg=self.composed.cfg, choices=self.composed.choices, run_dir=run_dir, pm=self.pm,
                          installed_pm=self.session.pm_all, traits=traits, rank=ranks.rank,
                          world_size=ranks.world_size, local_rank=ranks.local_rank, loss_hook=loss_hook)


def prepare_run(overrides: list[str] | None = None, p_flags: list[str] | None = None, *,
                session: Session | None = None, spies: tuple[object, ...] = ()) -> PreparedRun:
    """One run from ``overrides`` as typed after ``ft run``: see :meth:`Session.prepare`."""
    session = session or Session(p_flags)
    return session.prepare(session.normalise(list(overrides or [])), spies)


@dataclass
class JobResult:
    """What one job of ``ft run`` produced."""

    run_dir: Path | None
    overrides: list[str]
    status: str = "ok"
    error: str = ""
    metrics: dict[str, Any] = field(default_factory=dict)


def validate_all(session: Session, overrides: list[str], multirun: bool) -> tuple[list[str], list[PreparedRun]]:
    """Normalise overrides and prepare (compose, validate) every job; raises on the first bad one."""
    normalised = session.normalise(overrides)
    combos = expand_sweeps(normalised) if multirun else [normalised]
    return normalised, [session.prepare(combo) for combo in combos]


def run_command(overrides: list[str], multirun: bool, p_flags: list[str]) -> int:
    """Entry of ``ft run``: validate every job, run them one after another, report. Returns the exit code."""
    from ft import lifecycle, sweeps

    session = Session(p_flags)
    with_hydra = multirun and sweeps.uses_hydra_plugins(overrides)
    if with_hydra:  # Hydra's sweeper chooses the jobs: validate the ones ft can foresee
        normalised = session.normalise(overrides)
        jobs = [session.prepare(combo) for combo in sweeps.foreseeable_jobs(normalised)]
        sweeps.check_objective(jobs, overrides)
    else:
        _, jobs = validate_all(session, overrides, multirun)
    # Hydra's own folder overrides keep working: hydra.run.dir names the run folder, hydra.sweep.dir the sweep's.
    folders = {o.split("=", 1)[0]: o.split("=", 1)[1] for o in overrides if o.startswith(("hydra.run.dir=", "hydra.sweep.dir="))}
    if not multirun:
        run_dir = Path(folders["hydra.run.dir"]) if "hydra.run.dir" in folders else None
        run_job(jobs[0], run_dir, p_flags, overrides)
        return 0
    sweep_dir = Path(folders.get("hydra.sweep.dir") or Path(jobs[0].cfg.run.root) / f"sweep-{datetime.now():%Y-%m-%d_%H-%M-%S}")
    lifecycle.claim_run_dir(sweep_dir)
    objective = (jobs[0].cfg.sweep.objective, jobs[0].cfg.sweep.direction)
    if with_hydra:
        stopped = sweeps.run_with_hydra(session, normalised, p_flags, sweep_dir, jobs)
        results = sweeps.results_from_folders(sweep_dir)
        if stopped:
            print(f"ft: error: the sweep stopped: {stopped}", file=sys.stderr)
        session.pm_all.hook.post_sweep(sweep_dir=sweep_dir, results=results, objective=objective[0], direction=objective[1])
        return 1 if stopped or any(r.status != "ok" for r in results) else 0
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
    session.pm_all.hook.post_sweep(sweep_dir=sweep_dir, results=results, objective=objective[0], direction=objective[1])
    return 1 if any(r.status != "ok" for r in results) else 0


def run_lifecycle(overrides: list[str], run_dir: Path, *spies: object, p_flags: list[str] | None = None) -> dict[str, Any]:
    """Run ``overrides`` exactly like ``ft run`` (the same :func:`prepare_run`), in this process, into
    ``run_dir``; ``spies`` are extra plugin objects registered for the run (tests and notebooks watch the
    model, the trainer or the batches with them). Returns the run's final metrics."""
    from ft import lifecycle

    return lifecycle.run(prepare_run(overrides, p_flags, spies=spies), run_dir)
