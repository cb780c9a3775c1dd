"""From a command line to runs: :func:`prepare_run` once per job, then the lifecycle.

``prepare_run`` is the one path from overrides to a ready run (compose once, validate, activate the
selected plugins, build their plugin manager); ``ft run``, ``ft preprocess``, the testing helpers
and every multirun job use it. Every job of a multirun is composed and validated before the first
one starts, so a typo in the last combination fails in a second rather than after hours of
training. Each job gets its own folder and the sweep ends with a summary table of overrides and final
metrics (``summary.md``, ``summary.json`` and ``summary.png`` in the sweep folder).
"""

from __future__ import annotations

import json
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
from ft.plugins import (LoadedPlugin, active_plugins, discover, make_plugin_manager, merge_contributions, selected_traits,
                        skipped_loss_wrappers)


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
                if dataclasses.is_dataclass(tp):
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
    from ft import lifecycle

    from ft import sweeps

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
        print_sweep_summary(results, sweep_dir, *objective)
        return 1 if stopped or any(r.status != "ok" for r in results) else 0
    results = []
    for index, job in enumerate(jobs):
        result = JobResult(run_dir=sweep_dir / str(index), overrides=job.composed.overrides)
        results.append(result)
        try:
            result.metrics = run_job(job, result.run_dir, p_flags)
        except FtUserError as exc:
            result.status, result.error = "user-error", str(exc)
            print(f"ft: error: job {index}: {exc}", file=sys.stderr)
        except Exception as exc:  # noqa: BLE001 - a crashed job is reported, the sweep goes on
            result.status, result.error = "failed", f"{type(exc).__name__}: {exc}"
            traceback.print_exc()
            if result.run_dir.is_dir():
                (result.run_dir / "error.txt").write_text(traceback.format_exc())
    print_sweep_summary(results, sweep_dir, *objective)
    return 1 if any(r.status != "ok" for r in results) else 0


def best_job(results: list[JobResult], objective: str | None, direction: str = "minimize") -> int | None:
    """The index of the finished job with the best ``objective`` metric (``None`` without one)."""
    scored = [(r.metrics[objective], i) for i, r in enumerate(results) if r.status == "ok" and objective
              and isinstance(r.metrics.get(objective), (int, float)) and r.metrics[objective] == r.metrics[objective]]
    if not scored:
        return None
    return (min(scored) if direction == "minimize" else max(scored, key=lambda s: (s[0], -s[1])))[1]


def _metric_columns(results: list[JobResult], objective: str | None = None) -> list[str]:
    preferred = [*([objective] if objective else []), "train_loss", "eval_loss", "task_accuracy_before",
                 "task_accuracy_after"]
    preferred = list(dict.fromkeys(preferred))
    present = {k for r in results for k in r.metrics}
    # Scores a plugin measured before and after training (held-out reward accuracy...) come next.
    paired = sorted((k for k in present if k.endswith(("_before", "_after")) and k not in preferred),
                    key=lambda k: (k.rsplit("_", 1)[0], k.endswith("_after")))
    extra = sorted(k for k in present if k.startswith(("eval_", "task_", "rewards/")) and k not in preferred + paired)
    return [k for k in preferred if k in present] + paired + extra[: max(0, 6 - len(paired))]


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "" if value is None else str(value)


def _override_values(result: JobResult) -> dict[str, str]:
    return dict(o.lstrip("+").split("=", 1) for o in result.overrides if "=" in o)


def sweep_table(results: list[JobResult], objective: str | None = None, direction: str = "minimize") -> str:
    """A Markdown table: one row a job, its swept overrides and its final metrics; the best job (by
    ``objective``) is marked ``*``."""
    varying = _varying_keys(results)
    columns = _metric_columns(results, objective)
    best = best_job(results, objective, direction)
    header = ["job", *varying, "status", *columns]
    rows = []
    for index, result in enumerate(results):
        values = _override_values(result)
        rows.append([f"{index}{' *' if index == best else ''}", *[values.get(k, "") for k in varying], result.status,
                     *[_fmt(result.metrics.get(c)) for c in columns]])
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    line = lambda cells: "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths)) + " |"  # noqa: E731
    return "\n".join([line(header), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *map(line, rows)])


def _varying_keys(results: list[JobResult]) -> list[str]:
    keys: list[str] = []
    for result in results:
        for key in _override_values(result):
            if key not in keys:
                keys.append(key)
    values = {k: {_override_values(r).get(k) for r in results} for k in keys}
    return [k for k in keys if len(values[k]) > 1] or keys


def print_sweep_summary(results: list[JobResult], sweep_dir: Path, objective: str | None = None,
                        direction: str = "minimize") -> None:
    """Print the sweep table and write ``summary.md``, ``summary.json`` and ``summary.png``."""
    if not results:
        print(f"\nSweep summary: no job ran ({sweep_dir})")
        return
    table = sweep_table(results, objective, direction)
    best = best_job(results, objective, direction)
    note = f"\n* best {objective} ({direction}): job {best}, {results[best].run_dir}" if best is not None else ""
    print(f"\nSweep summary ({len(results)} jobs, {sweep_dir}):\n{table}{note}")
    (sweep_dir / "summary.md").write_text(table + note + "\n")
    (sweep_dir / "summary.json").write_text(json.dumps(
        {"objective": objective, "direction": direction, "best_job": best,
         "jobs": [{"job": i, "run_dir": str(r.run_dir), "overrides": r.overrides, "status": r.status,
                   "error": r.error, "metrics": r.metrics} for i, r in enumerate(results)]},
        indent=2, default=float) + "\n")
    _plot_sweep(results, sweep_dir / "summary.png", best)


def _plot_sweep(results: list[JobResult], out: Path, best: int | None = None) -> None:
    from ft.builtin.outputs import plot_curves, read_metrics

    varying = _varying_keys(results)
    curves = []
    for index, result in enumerate(results):
        records = read_metrics(result.run_dir / "metrics.jsonl")
        points = [(r["step"], r["loss"]) for r in records if isinstance(r.get("loss"), (int, float))]
        if points:
            label = " ".join(f"{k}={v}" for k, v in _override_values(result).items() if k in varying) or f"job {index}"
            label += " (best)" if index == best else ""
            curves.append((label, points))
    plot_curves(curves, out, title="ft sweep", ylabel="train loss")
