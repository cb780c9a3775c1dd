"""The lifecycle of one run: the fixed sequence of hook calls that turns a config into a model.

This is the kernel's loop and nothing more; every step's work is done by plugins. It is rank-aware:
every process the launcher started runs it, rank 0 alone claims and writes the run folder (config,
record, ``ft.log``, metrics, summary, plots, the final model), other ranks log to ``ft.rank<N>.log``,
and the run folder's name is decided once, by rank 0, and broadcast.
"""

from __future__ import annotations

import json
import logging
import platform
import sys
import time
import traceback
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ft.config import describe_selection, redact
from ft.context import RunContext
from ft.distributed import Ranks, broadcast_from_main, init_process_group, main_process_first, ranks_from_env
from ft.errors import FtUserError, PluginError
from ft.launch import mark_failed, report_failure, report_run_dir
from ft.plugins import merge_contributions

log = logging.getLogger("ft")


class RunFolderError(FtUserError):
    """The run folder already holds a run."""


def claim_run_dir(run_dir: Path) -> None:
    """Refuse to reuse a folder that already holds anything: a run folder is never overwritten."""
    if run_dir.exists() and any(run_dir.iterdir()):
        raise RunFolderError(
            f"run folder '{run_dir}' already exists and is not empty; ft never overwrites a run: "
            f"choose another run.name (or run.root)")
    run_dir.mkdir(parents=True, exist_ok=True)


def agree_run_dir(wanted: Path, ranks: Ranks) -> Path:
    """Rank 0 claims ``wanted`` and every rank gets the same folder (or rank 0's one-line error)."""
    answer: tuple[str, str] = ("", "")
    if ranks.is_main:
        try:
            claim_run_dir(wanted)
            answer = ("ok", str(wanted))
        except FtUserError as exc:
            answer = ("error", str(exc))
    status, value = broadcast_from_main(answer, ranks)
    if status != "ok":
        raise RunFolderError(value)
    return Path(value)


def _package_versions(distributions: list[str]) -> dict[str, str]:
    """Python's version and those of the libraries ft and the run's active plugin distributions require."""
    import importlib.metadata as md

    from ft.plugins import requirement_name

    versions = {"python": platform.python_version()}
    for dist in ["ft", *distributions]:
        try:
            requirements = md.requires(dist) or []
        except md.PackageNotFoundError:
            continue
        for requirement in requirements:
            name = requirement_name(requirement)
            if "extra ==" in requirement or name in versions or name.startswith("ft"):
                continue
            try:
                versions[name] = md.version(name)
            except md.PackageNotFoundError:
                pass
    return versions


def write_run_record(run_dir: Path, prepared: Any, world_size: int, resume: bool = False) -> None:
    """Write the resolved config and the record of plugins and package versions (a resume appends
    to the record and keeps the run's config)."""
    import yaml

    composed = prepared.composed
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    if resume:
        record = json.loads((run_dir / "run.json").read_text())
        record.setdefault("resumed", []).append({"at": now, "from": composed.cfg.run.resume_from,
                                                 "world_size": world_size})
        (run_dir / "run.json").write_text(json.dumps(record, indent=2) + "\n")
        return
    (run_dir / "config.yaml").write_text(yaml.safe_dump(redact(composed.container), sort_keys=False))
    record = {
        "started": now,
        "command": " ".join(["ft", "run", *redact_overrides(composed.overrides)]),
        "overrides": redact_overrides(composed.overrides),
        "choices": composed.choices,
        "plugin_defaults": composed.plugin_defaults,
        "world_size": world_size,
        "plugins": [
            {"name": p.name, "distribution": p.distribution, "version": p.version,
             "builtin": p.builtin, "active": p in prepared.active}
            for p in prepared.session.plugins
        ],
        "packages": _package_versions(sorted({p.distribution for p in prepared.active})),
    }
    (run_dir / "run.json").write_text(json.dumps(record, indent=2) + "\n")


def redact_overrides(overrides: list[str]) -> list[str]:
    """Overrides with secret-looking values replaced (``hub_token=***``)."""
    from ft.config import _SECRET_KEY

    return [o.split("=", 1)[0] + "=***" if "=" in o and _SECRET_KEY.search(o.split("=", 1)[0]) else o
            for o in overrides]


def setup_logging(run_dir: Path, ranks: Ranks) -> logging.Handler:
    """Log ft's messages to the terminal (rank 0) and to ``ft.log`` (``ft.rank<N>.log`` on other ranks)."""
    name = "ft.log" if ranks.is_main else f"ft.rank{ranks.rank}.log"
    handler = logging.FileHandler(run_dir / name, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    metrics_log = logging.getLogger("ft.metrics")
    metrics_log.propagate = False
    metrics_log.setLevel(logging.INFO)
    metrics_log.addHandler(handler)
    if ranks.is_main and not any(type(h) is logging.StreamHandler for h in log.handlers):
        console = logging.StreamHandler(sys.stderr)
        console.setFormatter(logging.Formatter("[ft] %(message)s"))
        log.addHandler(console)
    try:
        import transformers

        transformers.utils.logging.add_handler(handler)
    except ImportError:  # pragma: no cover
        pass
    return handler


def _close_logging(handler: logging.Handler) -> None:
    log.removeHandler(handler)
    logging.getLogger("ft.metrics").removeHandler(handler)
    try:
        import transformers

        transformers.utils.logging.remove_handler(handler)
    except ImportError:  # pragma: no cover
        pass
    handler.close()


def run(prepared: Any, run_dir: Path | None = None, resume: bool = False) -> dict[str, Any]:
    """Run the whole lifecycle of a :class:`ft.runner.PreparedRun` once; return the final metrics.

    ``run_dir`` defaults to ``<run.root>/<run.name>``; with several ranks, rank 0's choice wins.
    ``resume`` continues in an existing run folder (``ft resume``) instead of claiming a new one.
    """
    cfg = prepared.composed.cfg
    ranks = ranks_from_env()
    dist = getattr(cfg, "dist", None)
    init_process_group(ranks, dist.timeout_minutes if dist is not None else None)
    try:
        if resume and run_dir is not None:
            run_dir = Path(run_dir)
        else:
            run_dir = agree_run_dir(Path(run_dir) if run_dir else Path(cfg.run.root) / cfg.run.name, ranks)
    except FtUserError as exc:
        report_failure(ranks.rank, exc)
        raise
    if ranks.is_main:
        write_run_record(run_dir, prepared, ranks.world_size, resume)
        report_run_dir(run_dir)
    handler = setup_logging(run_dir, ranks)
    ctx = prepared.context(run_dir, ranks)
    try:
        return _run(ctx, ranks)
    except Exception as exc:
        report_failure(ranks.rank, exc)
        if not isinstance(exc, FtUserError):
            name = "error.txt" if ranks.is_main else f"error.rank{ranks.rank}.txt"
            (run_dir / name).write_text(traceback.format_exc())
        if ranks.is_main and ranks.world_size > 1:
            mark_failed(run_dir, str(exc) if isinstance(exc, FtUserError) else f"{type(exc).__name__}: {exc}")
        raise
    finally:
        ctx.close()
        _close_logging(handler)


def _final_eval(trainer: Any) -> dict[str, Any]:
    """Eval metrics of the trained model: transformers already evaluates at the last step when an
    eval split exists, so reuse that log instead of a second pass over the split."""
    state = trainer.state
    last = next((h for h in reversed(state.log_history) if "eval_loss" in h), None)
    if last is not None and last.get("step") == state.global_step:
        return {k: v for k, v in last.items() if k.startswith("eval_")}
    return trainer.evaluate()


def build_model(ctx: RunContext) -> None:
    """The model phases, in order: patch -> load -> prepare -> adapt -> ready."""
    pm = ctx.pm
    load_kwargs = merge_contributions(pm.hook.pre_model_load(ctx=ctx), "pre_model_load")
    ctx.model = pm.hook.load_model(ctx=ctx, load_kwargs=load_kwargs)
    pm.hook.prepare_model(ctx=ctx)
    pm.hook.adapt_model(ctx=ctx)
    pm.hook.post_model_load(ctx=ctx)


def _log_parameters(model: Any) -> None:
    counter = getattr(model, "get_nb_trainable_parameters", None)
    if callable(counter):  # PEFT models: counts bitsandbytes' packed 4-bit weights at their real size
        trainable, total = counter()
    else:
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        total = sum(p.numel() for p in model.parameters())
    log.info("parameters: %s trainable of %s (%.2f%%)", f"{trainable:,}", f"{total:,}", 100 * trainable / max(total, 1))


def _write_outputs(ctx: RunContext, metrics: dict[str, Any], started: float) -> None:
    """The run's closing record, on rank 0: wall time in the metrics, ``summary.json``."""
    metrics["wall_time_s"] = round(time.monotonic() - started, 1)
    if not ctx.is_main:
        return
    (ctx.run_dir / "summary.json").write_text(json.dumps(metrics, indent=2, default=float) + "\n")


def _finish_interrupted(ctx: RunContext, metrics: dict[str, Any], started: float) -> dict[str, Any]:
    """A run stopped by a signal: its checkpoint is saved; write a summary marked
    interrupted, and say how to resume. No final model, no final evaluation."""
    step = ctx.trainer.state.global_step
    metrics.update(interrupted=ctx.interrupted, step=step)
    _write_outputs(ctx, metrics, started)
    if ctx.is_main:
        log.info("stopped at step %s (%s); checkpoint: %s", step, ctx.interrupted,
                 ctx.run_dir / "checkpoints" / f"checkpoint-{step}")
        print(f"[ft] interrupted at step {step}; resume with: ft resume {ctx.run_dir}")
    return metrics


def build_trainer(ctx: RunContext, ranks: Ranks) -> None:
    """Everything before training: tokenizer, data, training arguments, the model phases, the trainer."""
    from ft.training import base_training_args

    pm = ctx.pm
    ctx.tokenizer = pm.hook.load_tokenizer(ctx=ctx)
    with main_process_first(ranks):
        datasets = pm.hook.prepare_dataset(ctx=ctx)
    if datasets is None:
        raise PluginError("no plugin prepared a dataset (prepare_dataset returned nothing)")
    ctx.datasets = datasets
    for split, stats in ctx.datasets.stats.items():
        log.info("data (%s): %s", split, ", ".join(f"{k}={v}" for k, v in stats.items()))

    ctx.training_args = merge_contributions(pm.hook.training_args(ctx=ctx), "training_args", base=base_training_args(ctx))
    ctx.args = pm.hook.training_args_class(ctx=ctx)(**ctx.training_args)

    build_model(ctx)
    _log_parameters(ctx.model)

    ctx.data_collator = pm.hook.collator(ctx=ctx)
    for split, dataset in (("train", ctx.datasets.train), ("eval", ctx.datasets.eval)):
        if dataset is not None:
            batching = pm.hook.batch_sampler(ctx=ctx, dataset=dataset, split=split)
            if batching is not None:
                ctx.batching[split] = batching
    ctx.callbacks = [cb for group in pm.hook.callbacks(ctx=ctx) for cb in (group or [])]
    ctx.trainer = pm.hook.create_trainer(ctx=ctx)
    if ctx.trainer is None:
        raise PluginError("no plugin created a trainer for the selected method")


def _run(ctx: RunContext, ranks: Ranks) -> dict[str, Any]:
    from transformers import set_seed

    cfg, pm = ctx.cfg, ctx.pm
    started = time.monotonic()
    set_seed(cfg.seed)
    log.info("run folder: %s%s", ctx.run_dir, f" ({ranks.world_size} ranks)" if ranks.world_size > 1 else "")
    log.info("selected: %s", describe_selection(ctx.choices, ctx.cfg.model.name_or_path))
    build_trainer(ctx, ranks)
    pm.hook.post_trainer_create(ctx=ctx)

    ctx.train_output = pm.hook.run_training(ctx=ctx)
    metrics: dict[str, Any] = dict(getattr(ctx.train_output, "metrics", {}) or {})
    if ctx.interrupted:
        return _finish_interrupted(ctx, metrics, started)
    if ctx.datasets.eval is not None:
        metrics.update(_final_eval(ctx.trainer))
    pm.hook.post_train(ctx=ctx, metrics=metrics)

    model_dir = ctx.run_dir / "model"
    if cfg.run.save_final_model:
        pm.hook.save_model(ctx=ctx, output_dir=str(model_dir))
    _write_outputs(ctx, metrics, started)
    if cfg.run.save_final_model and ctx.is_main:  # after the outputs: a model card reports them
        pm.hook.post_save(ctx=ctx, output_dir=str(model_dir))
        log.info("final model: %s", model_dir)
    if ctx.is_main:
        for line in ctx.report_lines:
            print(line)
    return metrics
