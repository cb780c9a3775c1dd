"""The summary of a sweep (``ft run -m``): a table of each job's overrides and final metrics, the best job,
and the training loss curves of every job in one plot."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ft.api import plot_curves, read_metrics

#: A finished job (``ft_sweeps.plugin.JobResult``): run_dir, overrides, status, error, metrics.
JobResult = Any


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
