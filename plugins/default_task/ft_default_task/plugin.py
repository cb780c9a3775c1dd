"""Builtin plugin: the embedded default task (``data=default_task``, what ``ft run`` trains on).

ft generates the task's rows itself, trains on them, and scores held-out rows before and after
training so the user sees that the model learned (accuracy, a few sample generations).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import Any

from ft.api import ConfigError, DatasetBundle, PluginInfo, RunContext, gathered_weights, hookimpl, to_plain

FT_PLUGIN = PluginInfo(
    name="default_task", contract="3.0",
    description="The embedded default task: generated data, before/after score on held-out rows",
    capabilities=("dataset",),
)

log = logging.getLogger("ft")
#: The default task's learning rate when an adapter trains instead of every weight (experiment
#: default_task's 5e-5 is a full fine-tune's, at which a 60-step LoRA run learns next to nothing).
#: Measured 2026-12-01, `ft run +adapter=lora` (r=16), 2-core CPU: held-out exact match 0.00 -> 0.67 at
#: 1e-3 (4 min 13 s), 0.00 -> 0.53 at 2e-4; the full fine-tune reaches 0.69 at 5e-5.
ADAPTER_LR = 1e-3


@dataclass
class TaskState:
    """This run's held-out rows and their scores before and after training."""

    eval_rows: list[dict[str, Any]] = field(default_factory=list)
    before: Any = None
    after: Any = None


@hookimpl
def config_schemas() -> dict[str, type]:
    from ft_default_task.schema import SCHEMAS

    return dict(SCHEMAS)


@hookimpl
def validate_config(cfg: Any, choices: dict[str, str | None]) -> None:
    if choices.get("data") == "default_task" and cfg.data.path:
        raise ConfigError(f"data.path={cfg.data.path!r} is set, but data=default_task generates its own rows and "
                          "would ignore it; choose your data's format too (data=alpaca, data=chat, data=completion)")


@hookimpl
def config_defaults(choices: dict[str, str | None], config: dict[str, Any]) -> dict[str, Any] | None:
    """With an adapter, the embedded experiment's learning rate is an adapter's (optim.lr=... sets another)."""
    if choices.get("adapter") and choices.get("experiment") == "default_task":
        return {"optim.lr": ADAPTER_LR}
    return None


@hookimpl
def prepare_dataset(ctx: RunContext) -> DatasetBundle:
    from ft_data.api import bundle_from_rows
    from ft_default_task.task import split_rows

    task = ctx.cfg.data.task
    train_rows, eval_rows = split_rows(task.train_rows, task.eval_rows, task.seed)
    ctx.state(TaskState).eval_rows = eval_rows
    if ctx.is_main:
        task_dir = ctx.run_dir / "task"
        task_dir.mkdir(exist_ok=True)
        for name, rows in (("train.jsonl", train_rows), ("heldout.jsonl", eval_rows)):
            with (task_dir / name).open("w", encoding="utf-8") as handle:
                handle.writelines(json.dumps(row) + "\n" for row in rows)
    return bundle_from_rows(ctx, train_rows, source="default task")


def _sampler(ctx: RunContext) -> Any:
    """The selected method's own sampler (``text_sampler``), or ``None`` for ``model.generate``."""
    return ctx.pm.hook.text_sampler(method_config=to_plain(ctx.cfg.method) or {}, model=ctx.model, tokenizer=ctx.tokenizer)


@hookimpl
def post_trainer_create(ctx: RunContext) -> None:
    from ft_default_task.task import score

    state = ctx.state(TaskState)
    log.info("scoring %d held-out examples before training...", len(state.eval_rows))
    with gathered_weights(ctx):  # every rank scores, together (ZeRO-3 gathers the partitioned weights)
        state.before = score(ctx.model, ctx.tokenizer, state.eval_rows, batch_size=16,
                                progress="held-out before" if ctx.is_main else None, sampler=_sampler(ctx))
    log.info("held-out accuracy before training: %.1f%%", 100 * state.before.accuracy)


@hookimpl
def post_train(ctx: RunContext, metrics: dict[str, Any]) -> None:
    from ft_default_task.task import format_report, score

    state = ctx.state(TaskState)
    log.info("scoring %d held-out examples after training...", len(state.eval_rows))
    with gathered_weights(ctx):
        state.after = score(ctx.model, ctx.tokenizer, state.eval_rows, batch_size=16,
                               progress="held-out after" if ctx.is_main else None, sampler=_sampler(ctx))
    metrics["task_accuracy_before"] = state.before.accuracy
    metrics["task_accuracy_after"] = state.after.accuracy
    report = format_report(state.before, state.after)
    if ctx.is_main:
        (ctx.run_dir / "task_report.txt").write_text(report + "\n")
    ctx.report_lines.append(report)
