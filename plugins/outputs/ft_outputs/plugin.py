"""Builtin plugin: what a run leaves to read, beside the kernel's own records (config.yaml, run.json,
summary.json).

* ``metrics.jsonl``: every logged dict with its step (the trainer's logs, loss parts included);
* the pace line after the second step (how long the rest will take);
* ``loss.png``: train and eval loss against step (``run.plot``), also for an interrupted run;
* the model card (``README.md`` next to the final model), from the run folder alone (``card.py``);
* the sweep summary of ``ft run -m``: a table of each job's overrides and final metrics, the best job,
  ``summary.md``, ``summary.json`` and ``summary.png`` in the sweep folder (``sweep.py``).
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any

from ft.api import PluginInfo, RunContext, hookimpl, plot_curves, read_metrics

FT_PLUGIN = PluginInfo(
    name="outputs", contract="3.0",
    description="metrics.jsonl, the pace line, loss.png, the model card, the sweep summary",
    always_active=True,
)

#: transformers' reporting integrations, what ``trainer.report_to`` may name (a test keeps this list equal to
#: transformers').
REPORT_TO = ("azure_ml", "clearml", "codecarbon", "comet_ml", "dagshub", "dvclive", "flyte", "kubeflow", "mlflow",
             "neptune", "swanlab", "tensorboard", "trackio", "wandb", "all", "none")
#: The package each ``trainer.report_to`` integration needs (any one of them).
REPORT_TO_PACKAGES = {
    "tensorboard": ("tensorboard", "tensorboardX"), "wandb": ("wandb",), "mlflow": ("mlflow",), "trackio": ("trackio",),
    "comet_ml": ("comet_ml",), "neptune": ("neptune",), "clearml": ("clearml",), "dvclive": ("dvclive",),
    "codecarbon": ("codecarbon",), "swanlab": ("swanlab",), "azure_ml": ("azureml",), "dagshub": ("dagshub",),
    "flyte": ("flytekit",), "kubeflow": ("kfp",),
}

log = logging.getLogger("ft")
#: Step metrics go to ft.log only: the trainer's progress bar already shows them on the terminal.
metrics_log = logging.getLogger("ft.metrics")


def metrics_callback(ctx: RunContext) -> Any:
    """A TrainerCallback appending every log dict (with step and epoch) to ``metrics.jsonl``."""
    from transformers import TrainerCallback

    class MetricsToJsonLines(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):  # noqa: ANN001
            if not logs or not state.is_world_process_zero:
                return
            record = {"step": state.global_step, "epoch": state.epoch, **logs}
            with ctx.metrics_path.open("a", encoding="utf-8") as handle:
                handle.write(json.dumps(record, default=float) + "\n")
            metrics_log.info("step %s: %s", state.global_step,
                             ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in logs.items()))

        def on_train_end(self, args, state, control, **kwargs):  # noqa: ANN001
            if state.is_world_process_zero:  # an interrupted run gets its curve too (post_train adds the final eval)
                write_loss_curve(ctx)

    return MetricsToJsonLines()


def pace_callback() -> Any:
    """A TrainerCallback that says, once the second step is done, how long the rest of the run will take
    (from the second step's duration: the first carries the warm-up), so a long run does not look hung."""
    import time

    from transformers import TrainerCallback

    class Pace(TrainerCallback):
        def __init__(self) -> None:
            self.first_done: float | None = None

        def on_step_end(self, args, state, control, **kwargs):  # noqa: ANN001
            if not state.is_world_process_zero or state.global_step > 2:
                return
            now = time.monotonic()
            if state.global_step == 1:
                self.first_done = now
                return
            left = state.max_steps - state.global_step
            if self.first_done is None or left <= 0:
                return
            step = now - self.first_done
            finish = time.strftime("%H:%M", time.localtime(time.time() + left * step))
            log.info("pace: %.1f s a step; %d steps left, about %s (done around %s)", step, left,
                     _duration(left * step), finish)

    return Pace()


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.0f} min" if seconds < 5400 else f"{seconds / 3600:.1f} h"


@hookimpl
def validate_config(cfg: Any, choices: dict[str, str | None]) -> None:
    """``trainer.report_to``: integrations transformers knows, whose package is installed."""
    import importlib.util

    from ft.api import ConfigError, did_you_mean

    for integration in cfg.trainer.report_to:
        if integration not in REPORT_TO:
            raise ConfigError(f"trainer.report_to=[{integration}]: no such integration{did_you_mean(integration, REPORT_TO)}; "
                              f"expected some of {', '.join(REPORT_TO)}")
        packages = REPORT_TO_PACKAGES.get(integration, ())
        if packages and not any(importlib.util.find_spec(p) for p in packages):
            raise ConfigError(f"trainer.report_to=[{integration}]: the {packages[0]} package is not installed; "
                              f"install it with: pip install {packages[0]} (or drop {integration} from trainer.report_to)")


@hookimpl(tryfirst=True)
def callbacks(ctx: RunContext) -> list[Any]:
    return [metrics_callback(ctx), pace_callback()]


def write_loss_curve(ctx: RunContext) -> None:
    """``loss.png`` from ``metrics.jsonl`` (rank 0, when ``run.plot``)."""
    if ctx.is_main and ctx.cfg.run.plot and plot_losses(read_metrics(ctx.metrics_path), ctx.run_dir / "loss.png",
                                                         title=ctx.run_dir.name):
        log.info("loss curve: %s", ctx.run_dir / "loss.png")


@hookimpl(trylast=True)
def post_train(ctx: RunContext, metrics: dict[str, Any]) -> None:
    write_loss_curve(ctx)


@hookimpl(trylast=True)
def post_save(ctx: RunContext, output_dir: str) -> None:
    """A Hugging Face model card (README.md) next to the saved weights."""
    from ft_outputs.card import write_model_card

    write_model_card(Path(output_dir), ctx.run_dir)


def plot_losses(records: list[dict[str, Any]], out: Path, title: str = "") -> bool:
    """Draw training (and eval) loss against step into ``out``; False when there is nothing to plot."""
    train = [(r["step"], r["loss"]) for r in records if isinstance(r.get("loss"), (int, float)) and math.isfinite(r["loss"])]
    evals = [(r["step"], r["eval_loss"]) for r in records if isinstance(r.get("eval_loss"), (int, float))]
    curves = [c for c in (("train loss", train), ("eval loss", evals)) if c[1]]
    return plot_curves(curves, out, title=title or "ft run", ylabel="loss")
