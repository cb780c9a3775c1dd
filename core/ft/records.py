"""Reading a run folder's metrics and drawing curves: small utilities plugins share (``ft.api``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """The records of a ``metrics.jsonl`` file (empty if it does not exist)."""
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


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
