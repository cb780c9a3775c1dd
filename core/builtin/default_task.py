"""Builtin plugin: the embedded default task (``data=default_task``, what ``ft run`` trains on).

ft generates the task's rows itself, trains on them, and scores held-out rows before and after
training so the user sees that the model learned (accuracy, a few sample generations).
"""

from __future__ import annotations

import json
import logging
from typing import Any

from ft import hookimpl
from ft.context import DatasetBundle, RunContext
from ft.plugins import PluginInfo

FT_PLUGIN = PluginInfo(
    name="default_task",
    description="The embedded default task: generated data, before/after score on held-out rows",
    capabilities=("dataset",),
)
BUILTIN_OPTIONS = ("data/default_task",)

log = logging.getLogger("ft")


@hookimpl
def validate_config(cfg: Any, choices: dict[str, str | None]) -> None:
    from ft.errors import ConfigError

    if choices.get("data") == "default_task" and cfg.data.path:
        raise ConfigError(f"data.path={cfg.data.path!r} is set, but data=default_task generates its own rows and "
                          "would ignore it; choose your data's format too (data=alpaca, data=chat, data=completion)")


@hookimpl
def prepare_dataset(ctx: RunContext) -> DatasetBundle:
    from ft.builtin.data import bundle_from_rows
    from ft.default_task import split_rows

    task = ctx.cfg.data.task
    train_rows, eval_rows = split_rows(task.train_rows, task.eval_rows, task.seed)
    ctx.extras["default_task"] = {"eval_rows": eval_rows}
    if ctx.is_main:
        task_dir = ctx.run_dir / "task"
        task_dir.mkdir(exist_ok=True)
        for name, rows in (("train.jsonl", train_rows), ("heldout.jsonl", eval_rows)):
            with (task_dir / name).open("w", encoding="utf-8") as handle:
                handle.writelines(json.dumps(row) + "\n" for row in rows)
    return bundle_from_rows(ctx, train_rows, source="default task")


@hookimpl
def post_trainer_create(ctx: RunContext) -> None:
    from ft.default_task import score

    state = ctx.extras["default_task"]
    log.info("scoring %d held-out examples before training...", len(state["eval_rows"]))
    state["before"] = score(ctx.model, ctx.tokenizer, state["eval_rows"])
    log.info("held-out accuracy before training: %.1f%%", 100 * state["before"].accuracy)


@hookimpl
def post_train(ctx: RunContext, metrics: dict[str, Any]) -> None:
    from ft.default_task import format_report, score

    state = ctx.extras["default_task"]
    log.info("scoring %d held-out examples after training...", len(state["eval_rows"]))
    state["after"] = score(ctx.model, ctx.tokenizer, state["eval_rows"])
    metrics["task_accuracy_before"] = state["before"].accuracy
    metrics["task_accuracy_after"] = state["after"].accuracy
    report = format_report(state["before"], state["after"])
    if ctx.is_main:
        (ctx.run_dir / "task_report.txt").write_text(report + "\n")
    ctx.report_lines.append(report)
