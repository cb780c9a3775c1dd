"""Held-out scores before and after training, summary metrics and the reward-curve plot.

TRL logs ``rewards/accuracies`` and ``rewards/margins`` (``eval_``-prefixed on the held-out split);
ft's metrics callback writes every log dict to ``metrics.jsonl``. This module evaluates the held-out
split once before training (so the log has a step-0 point), copies the before/after numbers into the
run summary and draws ``rewards.png`` next to ``loss.png``.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

log = logging.getLogger("ft")

#: Summary names of the held-out numbers, keyed by TRL's eval metric.
HELDOUT = {
    "eval_rewards/accuracies": "heldout_reward_accuracy",
    "eval_rewards/margins": "heldout_reward_margin",
}
TRAIN = ("rewards/accuracies", "rewards/margins")


def evaluate_before(trainer: Any) -> dict[str, float]:
    """Score the held-out split with the untrained model (logged at step 0).

    Not under DeepSpeed: transformers evaluates before training by starting an inference engine (refused
    under ZeRO-1/2), and under ZeRO-3 that engine then stands where training's must be built; the
    after-training score is still reported."""
    deepspeed = getattr(getattr(trainer, "accelerator", None), "state", None)
    deepspeed = getattr(deepspeed, "deepspeed_plugin", None)
    if deepspeed is not None:
        log.info("held-out split not scored before training: under DeepSpeed ZeRO-%d the trainer evaluates only "
                 "once training has started its engine; the score after training is reported", deepspeed.zero_stage)
        return {}
    log.info("evaluating the held-out split before training...")
    return dict(trainer.evaluate())


def last_train_values(log_history: list[dict[str, Any]]) -> dict[str, float]:
    """The last logged training value of each reward metric."""
    found: dict[str, float] = {}
    for record in log_history:
        for key in TRAIN:
            if isinstance(record.get(key), (int, float)):
                found[key] = float(record[key])
    return found


def summarise(metrics: dict[str, Any], before: dict[str, float] | None, log_history: list[dict[str, Any]]) -> list[str]:
    """Add before/after held-out numbers and the last training rewards to ``metrics``; return report lines."""
    metrics.update(last_train_values(log_history))
    lines = []
    for key, name in HELDOUT.items():
        after = metrics.get(key)
        if not isinstance(after, (int, float)):
            continue
        metrics[f"{name}_after"] = float(after)
        if before and isinstance(before.get(key), (int, float)):
            metrics[f"{name}_before"] = float(before[key])
            line = f"  {name.replace('_', ' ')}: {before[key]:.4f} -> {after:.4f}"
            if key == "eval_rewards/accuracies" and before.get("eval_rewards/margins") == 0.0:
                line += (" (0 before training is a tie, not a miss: the policy starts as its reference, so every "
                         "margin is 0; chance is 0.5)")
            lines.append(line)
        else:
            lines.append(f"  {name.replace('_', ' ')}: {after:.4f}")
    return lines


def plot_rewards(records: list[dict[str, Any]], out: Path, title: str = "") -> bool:
    """Draw reward accuracy and margin (train and held-out) against step; False if none was logged."""
    panels = [("accuracies", "reward accuracy"), ("margins", "reward margin")]
    series: dict[str, list[tuple[float, float]]] = {}
    for record in records:
        for metric, _ in panels:
            for prefix in ("", "eval_"):
                value = record.get(f"{prefix}rewards/{metric}")
                if isinstance(value, (int, float)) and math.isfinite(value):
                    series.setdefault(f"{prefix}{metric}", []).append((record["step"], value))
    if not series:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    # KTO logs no accuracy (its rows are unpaired): draw only the panels that have points.
    panels = [(m, label) for m, label in panels if any(k.endswith(m) for k in series)]
    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 4), squeeze=False)
    for ax, (metric, label) in zip(axes[0], panels):
        for prefix, split in (("", "train"), ("eval_", "held-out")):
            points = series.get(f"{prefix}{metric}")
            if points:
                ax.plot(*zip(*points), label=split, marker="o" if prefix or len(points) < 30 else None)
        ax.set_xlabel("step")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title or "ft preference run")
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return True
