"""The lifecycle of one run: the fixed sequence of hook calls that turns a config into a model.

This is the kernel's loop and nothing more; every step's work is done by plugins.
"""

from __future__ import annotations

import json
import logging
import platform
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ft.config import Composed, redact
from ft.context import RunContext
from ft.errors import FtUserError, PluginError
from ft.plugins import LoadedPlugin

log = logging.getLogger("ft")


class RunFolderError(FtUserError):
    """The run folder already holds a run."""


def claim_run_dir(run_dir: Path) -> None:
    """Refuse to reuse a folder that already holds anything: a run folder is never overwritten."""
    if run_dir.exists() and any(run_dir.iterdir()):
        raise RunFolderError(
            f"run folder '{run_dir}' already exists and is not empty; ft never overwrites a run: "
            f"choose another run.name (or run.root)"
        )
    run_dir.mkdir(parents=True, exist_ok=True)


def _package_versions() -> dict[str, str]:
    import importlib.metadata as md

    versions = {"python": platform.python_version()}
    for name in ("torch", "transformers", "peft", "trl", "accelerate", "datasets", "bitsandbytes",
                 "hydra-core", "omegaconf", "pluggy"):
        try:
            versions[name] = md.version(name)
        except md.PackageNotFoundError:
            pass
    return versions


def write_run_record(run_dir: Path, composed: Composed, active: list[LoadedPlugin],
                     installed: list[LoadedPlugin]) -> None:
    """Write the resolved config and the record of plugins and package versions."""
    from omegaconf import OmegaConf

    container = redact(OmegaConf.to_container(composed.cfg, resolve=True))
    (run_dir / "config.yaml").write_text(OmegaConf.to_yaml(OmegaConf.create(container)))
    record = {
        "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join(["ft", "run", *redact_overrides(composed.overrides)]),
        "choices": composed.choices,
        "plugins": [
            {"name": p.name, "distribution": p.distribution, "version": p.version,
             "builtin": p.builtin, "active": p in active}
            for p in installed
        ],
        "packages": _package_versions(),
    }
    (run_dir / "run.json").write_text(json.dumps(record, indent=2) + "\n")


def redact_overrides(overrides: list[str]) -> list[str]:
    """Overrides with secret-looking values replaced (``hub_token=***``)."""
    from ft.config import _SECRET_KEY

    return [o.split("=", 1)[0] + "=***" if "=" in o and _SECRET_KEY.search(o.split("=", 1)[0]) else o
            for o in overrides]


def setup_logging(run_dir: Path) -> logging.Handler:
    """Log ft's messages to the terminal and to ``ft.log`` in the run folder."""
    handler = logging.FileHandler(run_dir / "ft.log", encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    metrics_log = logging.getLogger("ft.metrics")
    metrics_log.propagate = False
    metrics_log.setLevel(logging.INFO)
    metrics_log.addHandler(handler)
    if not any(isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler) for h in log.handlers):
        console = logging.StreamHandler(sys.stderr)
        console.setFormatter(logging.Formatter("[ft] %(message)s"))
        log.addHandler(console)
    try:
        import transformers

        transformers.utils.logging.add_handler(handler)
    except ImportError:  # pragma: no cover
        pass
    return handler


def run(composed: Composed, run_dir: Path, pm: Any, active: list[LoadedPlugin],
        installed: list[LoadedPlugin]) -> dict[str, Any]:
    """Run the whole lifecycle once and return the final metrics."""
    claim_run_dir(run_dir)
    write_run_record(run_dir, composed, active, installed)
    handler = setup_logging(run_dir)
    try:
        return _run(composed, run_dir, pm)
    finally:
        log.removeHandler(handler)
        logging.getLogger("ft.metrics").removeHandler(handler)
        try:
            import transformers

            transformers.utils.logging.remove_handler(handler)
        except ImportError:  # pragma: no cover
            pass
        handler.close()


def _final_eval(trainer: Any) -> dict[str, Any]:
    """Eval metrics of the trained model: transformers already evaluates at the last step when an
    eval split exists, so reuse that log instead of a second pass over the split."""
    state = trainer.state
    last = next((h for h in reversed(state.log_history) if "eval_loss" in h), None)
    if last is not None and last.get("step") == state.global_step:
        return {k: v for k, v in last.items() if k.startswith("eval_")}
    return trainer.evaluate()


def _run(composed: Composed, run_dir: Path, pm: Any) -> dict[str, Any]:
    from transformers import set_seed

    from ft.builtin.outputs import plot_losses, read_metrics
    from ft.training import base_training_args, merge_fragments

    cfg = composed.cfg
    started = time.monotonic()
    set_seed(int(cfg.seed))
    log.info("run folder: %s", run_dir)
    log.info("selected: %s", ", ".join(f"{k}={v}" for k, v in composed.choices.items() if v))
    ctx = RunContext(cfg=cfg, choices=composed.choices, run_dir=run_dir, pm=pm)

    ctx.tokenizer = pm.hook.load_tokenizer(ctx=ctx)
    ctx.datasets = pm.hook.prepare_dataset(ctx=ctx)
    if ctx.datasets is None:
        raise PluginError("no plugin prepared a dataset (prepare_dataset returned nothing)")
    for split, stats in ctx.datasets.stats.items():
        log.info("data (%s): %s", split, ", ".join(f"{k}={v}" for k, v in stats.items()))

    load_kwargs = merge_fragments({}, pm.hook.pre_model_load(ctx=ctx), "pre_model_load")
    ctx.model = pm.hook.load_model(ctx=ctx, load_kwargs=load_kwargs)
    pm.hook.post_model_load(ctx=ctx)
    counter = getattr(ctx.model, "get_nb_trainable_parameters", None)
    if callable(counter):  # PEFT models: counts bitsandbytes' packed 4-bit weights at their real size
        trainable, total = counter()
    else:
        trainable = sum(p.numel() for p in ctx.model.parameters() if p.requires_grad)
        total = sum(p.numel() for p in ctx.model.parameters())
    log.info("parameters: %s trainable of %s (%.2f%%)", f"{trainable:,}", f"{total:,}", 100 * trainable / max(total, 1))

    ctx.training_args = merge_fragments(base_training_args(ctx), pm.hook.training_args(ctx=ctx), "training_args")
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
    pm.hook.post_trainer_create(ctx=ctx)

    ctx.train_output = pm.hook.run_training(ctx=ctx)
    metrics: dict[str, Any] = dict(getattr(ctx.train_output, "metrics", {}) or {})
    if ctx.datasets.eval is not None:
        metrics.update(_final_eval(ctx.trainer))
    pm.hook.post_train(ctx=ctx, metrics=metrics)

    if cfg.run.save_final_model:
        model_dir = run_dir / "model"
        pm.hook.save_model(ctx=ctx, output_dir=str(model_dir))
        pm.hook.post_save(ctx=ctx, output_dir=str(model_dir))
        log.info("final model: %s", model_dir)
    if cfg.run.plot and plot_losses(read_metrics(ctx.metrics_path), run_dir / "loss.png", title=run_dir.name):
        log.info("loss curve: %s", run_dir / "loss.png")
    metrics["wall_time_s"] = round(time.monotonic() - started, 1)
    (run_dir / "summary.json").write_text(json.dumps(metrics, indent=2, default=float) + "\n")
    for line in ctx.report_lines:
        print(line)
    return metrics
