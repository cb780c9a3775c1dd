"""``ft run``: validate every job up front, then let Hydra launch the run (or the sweep).

Every job of a multirun is composed and validated before the first one starts, so a typo in the
last combination fails in a second rather than after hours of training. Each job gets its own folder
and the sweep ends with a summary table of overrides and final metrics (``summary.md`` and
``summary.png`` in the sweep folder).
"""

from __future__ import annotations

import json
import sys
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ft.config import Composed, compose, expand_sweeps, finish, normalise_overrides, searchpath_override
from ft.errors import FtUserError, PluginError
from ft.plugins import LoadedPlugin, active_plugins, discover, kernel_conf_dir, make_plugin_manager


@dataclass
class JobResult:
    """What one job of ``ft run`` produced."""

    run_dir: Path
    overrides: list[str]
    status: str = "ok"
    error: str = ""
    metrics: dict[str, Any] = field(default_factory=dict)


def collect_schemas(pm: Any) -> dict[str, type]:
    """Merge the kernel's schemas with every plugin's ``config_schemas``."""
    from ft.schema import KERNEL_SCHEMAS

    schemas = dict(KERNEL_SCHEMAS)
    for contribution in pm.hook.config_schemas():
        for key, schema in (contribution or {}).items():
            if key in schemas and schemas[key] is not schema:
                raise PluginError(f"two plugins declare a schema for '{key}'")
            schemas[key] = schema
    return schemas


class Session:
    """The installed plugins and their schemas, discovered once per ``ft`` invocation."""

    def __init__(self, p_flags: list[str]) -> None:
        self.plugins: list[LoadedPlugin] = discover(p_flags)
        self.pm_all = make_plugin_manager(self.plugins)
        self.schemas = collect_schemas(self.pm_all)

    def validated(self, overrides: list[str]) -> Composed:
        composed = compose(overrides, self.plugins, self.schemas)
        self.check_plugins(composed)
        return composed

    def check_plugins(self, composed: Composed) -> list[LoadedPlugin]:
        """Activate the plugins this config selects and run their ``validate_config`` hooks."""
        active = active_plugins(self.plugins, composed.choices)
        pm = make_plugin_manager(active)
        pm.hook.validate_config(cfg=composed.cfg, choices=composed.choices)
        return active


def validate_all(session: Session, overrides: list[str], multirun: bool) -> tuple[list[str], list[Composed]]:
    """Normalise overrides and compose + validate every job; raises on the first bad one."""
    normalised = normalise_overrides(overrides, session.plugins)
    combos = expand_sweeps(normalised) if multirun else [normalised]
    return normalised, [session.validated(combo) for combo in combos]


def run_command(overrides: list[str], multirun: bool, p_flags: list[str]) -> int:
    """Entry of ``ft run``: validate, launch through Hydra, report. Returns the exit code."""
    session = Session(p_flags)
    normalised, composed_jobs = validate_all(session, overrides, multirun)
    pins = pinned_choices(normalised, composed_jobs) if multirun else []
    results = launch(session, normalised + pins, multirun)
    user_errors = [r for r in results if r.status == "user-error"]
    if multirun:
        print_sweep_summary(results)
    if len(results) == 1 and user_errors:
        raise FtUserError(user_errors[0].error)
    failed = [r for r in results if r.status != "ok"]
    if failed and not multirun:
        return 1
    return 1 if failed else 0


def pinned_choices(overrides: list[str], jobs: list[Composed]) -> list[str]:
    """``group=option`` for the choices every job of a sweep agrees on but the command line does not
    name, when they differ from the primary defaults (``+method=dpo,ipo`` selects ``data=preference``
    through the method options' defaults list). Hydra composes a sweep's base config without the swept
    values, so without the pin a key of that option (``data.max_eval_rows=8``) would not exist there."""
    import yaml

    primary = yaml.safe_load((kernel_conf_dir() / "ft.yaml").read_text())
    defaults = {k: v for entry in primary.get("defaults", []) if isinstance(entry, dict) for k, v in entry.items()}
    named = {o.split("=", 1)[0].lstrip("+~") for o in overrides}
    pins = []
    for group, choice in jobs[0].choices.items():
        if choice is None or group in named or group not in defaults or defaults[group] == choice:
            continue
        if all(job.choices.get(group) == choice for job in jobs):
            pins.append(f"{group}={choice}")
    return pins


def launch(session: Session, overrides: list[str], multirun: bool) -> list[JobResult]:
    """Run Hydra's main with our task function; collect one :class:`JobResult` a job."""
    import hydra
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import OmegaConf

    from ft import lifecycle

    results: list[JobResult] = []

    @hydra.main(config_path=str(kernel_conf_dir()), config_name="ft", version_base="1.3")
    def task(cfg: Any) -> None:
        hydra_cfg = HydraConfig.get()
        run_dir = Path(hydra_cfg.runtime.output_dir)
        job_overrides = [o for o in hydra_cfg.overrides.task if not o.startswith("hydra.")]
        result = JobResult(run_dir=run_dir, overrides=job_overrides)
        results.append(result)
        try:
            choices = {
                k: (None if v in (None, "null") else str(v))
                for k, v in OmegaConf.to_container(hydra_cfg.runtime.choices).items()
                if not k.startswith("hydra/")
            }
            composed = finish(cfg, choices, job_overrides, session.plugins, session.schemas)
            active = session.check_plugins(composed)
            pm = make_plugin_manager(active)
            result.metrics = lifecycle.run(composed, run_dir, pm, active, session.plugins)
        except FtUserError as exc:
            result.status, result.error = "user-error", str(exc)
            if multirun:  # a single run's error is printed once, by the ft command
                print(f"ft: error: job {len(results) - 1}: {exc}", file=sys.stderr)
        except Exception as exc:  # noqa: BLE001 - a crashed job is reported, the sweep goes on
            result.status, result.error = "failed", f"{type(exc).__name__}: {exc}"
            traceback.print_exc()
            (run_dir / "error.txt").write_text(traceback.format_exc()) if run_dir.is_dir() else None

    argv = ["ft", *(["--multirun"] if multirun else []), *overrides, searchpath_override(session.plugins)]
    saved = sys.argv
    sys.argv = argv
    try:
        task()
    finally:
        sys.argv = saved
    return results


def _metric_columns(results: list[JobResult]) -> list[str]:
    preferred = ["train_loss", "eval_loss", "task_accuracy_before", "task_accuracy_after"]
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


def sweep_table(results: list[JobResult]) -> str:
    """A Markdown table: one row a job, its swept overrides and its final metrics."""
    varying = _varying_keys(results)
    columns = _metric_columns(results)
    header = ["job", *varying, "status", *columns]
    rows = []
    for index, result in enumerate(results):
        values = dict(o.split("=", 1) for o in result.overrides if "=" in o)
        rows.append([str(index), *[values.get(k, "") for k in varying], result.status,
                     *[_fmt(result.metrics.get(c)) for c in columns]])
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    line = lambda cells: "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths)) + " |"  # noqa: E731
    return "\n".join([line(header), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *map(line, rows)])


def _varying_keys(results: list[JobResult]) -> list[str]:
    keys: list[str] = []
    for result in results:
        for override in result.overrides:
            key = override.split("=", 1)[0]
            if key not in keys:
                keys.append(key)
    values = {k: {dict(o.split("=", 1) for o in r.overrides if "=" in o).get(k) for r in results} for k in keys}
    return [k for k in keys if len(values[k]) > 1] or keys


def print_sweep_summary(results: list[JobResult]) -> None:
    """Print the sweep table and write ``summary.md``, ``summary.json`` and ``summary.png``."""
    if not results:
        return
    table = sweep_table(results)
    sweep_dir = results[0].run_dir.parent
    print(f"\nSweep summary ({len(results)} jobs, {sweep_dir}):\n{table}")
    (sweep_dir / "summary.md").write_text(table + "\n")
    (sweep_dir / "summary.json").write_text(json.dumps(
        [{"job": i, "run_dir": str(r.run_dir), "overrides": r.overrides, "status": r.status,
          "error": r.error, "metrics": r.metrics} for i, r in enumerate(results)], indent=2, default=float) + "\n")
    _plot_sweep(results, sweep_dir / "summary.png")


def _plot_sweep(results: list[JobResult], out: Path) -> None:
    from ft.builtin.outputs import read_metrics

    curves = []
    for index, result in enumerate(results):
        records = read_metrics(result.run_dir / "metrics.jsonl")
        points = [(r["step"], r["loss"]) for r in records if isinstance(r.get("loss"), (int, float))]
        if points:
            label = " ".join(o for o in result.overrides if o.split("=", 1)[0] in _varying_keys(results)) or f"job {index}"
            curves.append((label, points))
    if not curves:
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for label, points in curves:
        ax.plot(*zip(*points), label=label)
    ax.set_xlabel("step")
    ax.set_ylabel("train loss")
    ax.set_title("ft sweep")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
