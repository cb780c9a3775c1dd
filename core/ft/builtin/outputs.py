"""Builtin plugin: the kernel's training fallbacks and the run's outputs.

Fallbacks (``trylast``, claiming no capability): the arguments class (``TrainingArguments``), the
loss (the method's own), the training loop (``trainer.train``) and saving the final model. Outputs:
metrics as JSON lines, the loss curve, the model card of the saved model.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
from pathlib import Path
from typing import Any

from ft import hookimpl
from ft.context import RunContext
from ft.plugins import PluginInfo

FT_PLUGIN = PluginInfo(
    name="outputs",
    description="Training fallbacks (arguments class, loss, loop, save) and outputs (metrics.jsonl, loss.png)",
    always_active=True,
)

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


@hookimpl(tryfirst=True)
def callbacks(ctx: RunContext) -> list[Any]:
    return [metrics_callback(ctx), pace_callback()]


@hookimpl(trylast=True)
def training_args_class(ctx: RunContext) -> type:
    from transformers import TrainingArguments

    return TrainingArguments


@hookimpl(trylast=True)
def loss(ctx: RunContext, call: Any) -> Any:
    """The method's own loss, innermost in the chain that loss kernels replace and wrappers extend."""
    return call.method_loss()


@hookimpl(trylast=True)
def run_training(ctx: RunContext) -> Any:
    from ft.builtin.reliability import resolve_resume_from

    resume = ctx.cfg.run.resume_from
    checkpoint = str(resolve_resume_from(resume, ctx.cfg.run.root)) if resume else None
    return ctx.trainer.train(resume_from_checkpoint=checkpoint)


@hookimpl(trylast=True)
def save_model(ctx: RunContext, output_dir: str) -> bool:
    """Save into a temporary folder first so a crash never leaves a half-written model.

    Every rank calls ``trainer.save_model`` (gathering sharded weights is collective); it writes on
    rank 0 only, which then adds the tokenizer and renames the folder into place.
    """
    final = Path(output_dir)
    partial = final.with_name(final.name + ".partial")
    if ctx.is_main:
        shutil.rmtree(partial, ignore_errors=True)
    ctx.trainer.save_model(str(partial))
    if ctx.is_main:
        if ctx.tokenizer is not None:
            ctx.tokenizer.save_pretrained(str(partial))
        (partial / "training_args.bin").unlink(missing_ok=True)
        partial.rename(final)
    return True


@hookimpl(trylast=True)
def post_save(ctx: RunContext, output_dir: str) -> None:
    """A Hugging Face model card (README.md) next to the saved weights, and ``datasets.json`` it cites."""
    from ft.model_card import record_datasets, write_model_card
    from ft.schema import to_plain

    record_datasets(ctx.run_dir, ctx.datasets, to_plain(ctx.cfg.data))
    write_model_card(Path(output_dir), ctx.run_dir)


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """The records of a ``metrics.jsonl`` file (empty if it does not exist)."""
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def plot_losses(records: list[dict[str, Any]], out: Path, title: str = "") -> bool:
    """Draw training (and eval) loss against step into ``out``; False when there is nothing to plot."""
    train = [(r["step"], r["loss"]) for r in records if isinstance(r.get("loss"), (int, float)) and math.isfinite(r["loss"])]
    evals = [(r["step"], r["eval_loss"]) for r in records if isinstance(r.get("eval_loss"), (int, float))]
    curves = [c for c in (("train loss", train), ("eval loss", evals)) if c[1]]
    return plot_curves(curves, out, title=title or "ft run", ylabel="loss")


def plot_curves(curves: list[tuple[str, list[tuple[float, float]]]], out: Path, title: str, ylabel: str,
                xlabel: str = "step") -> bool:
    """Draw labelled (x, y) curves into a PNG; False (and no file) when there is nothing to draw."""
    if not curves:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for label, points in curves:
        ax.plot(*zip(*points), label=label, marker="." if len(points) < 30 else None)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return True
