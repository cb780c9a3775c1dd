"""Builtin plugin: the run's outputs (metrics as JSON lines, training, final model, loss curve)."""

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
    description="Writes metrics.jsonl, runs training, saves the final model and loss.png",
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


@hookimpl(tryfirst=True)
def callbacks(ctx: RunContext) -> list[Any]:
    return [metrics_callback(ctx)]


@hookimpl(trylast=True)
def run_training(ctx: RunContext) -> Any:
    resume = ctx.cfg.run.resume_from
    if resume == "last":
        resume = True
    return ctx.trainer.train(resume_from_checkpoint=resume)


@hookimpl(trylast=True)
def save_model(ctx: RunContext, output_dir: str) -> bool:
    """Save into a temporary folder first so a crash never leaves a half-written model."""
    final = Path(output_dir)
    partial = final.with_name(final.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    ctx.trainer.save_model(str(partial))
    if ctx.tokenizer is not None:
        ctx.tokenizer.save_pretrained(str(partial))
    (partial / "training_args.bin").unlink(missing_ok=True)
    partial.rename(final)
    return True


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """The records of a ``metrics.jsonl`` file (empty if it does not exist)."""
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def plot_losses(records: list[dict[str, Any]], out: Path, title: str = "") -> bool:
    """Draw training (and eval) loss against step into ``out``; False when there is nothing to plot."""
    train = [(r["step"], r["loss"]) for r in records if isinstance(r.get("loss"), (int, float)) and math.isfinite(r["loss"])]
    evals = [(r["step"], r["eval_loss"]) for r in records if isinstance(r.get("eval_loss"), (int, float))]
    if not train and not evals:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    if train:
        ax.plot(*zip(*train), label="train loss", marker="." if len(train) < 30 else None)
    if evals:
        ax.plot(*zip(*evals), label="eval loss", marker="o")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title(title or "ft run")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return True
