"""The state of one run, handed to every lifecycle hook as ``ctx``."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class DatasetBundle:
    """Datasets produced by the data stage: ``train`` and an optional ``eval`` split.

    ``stats`` holds counts the data stage measured (rows in, rows dropped and why, tokens).
    """

    train: Any
    eval: Any | None = None
    stats: dict[str, Any] = field(default_factory=dict)


@dataclass
class Batching:
    """How one split is batched when a plugin takes batching over (the ``batch_sampler`` hook).

    The trainer's ``DataLoader`` reads ``dataset[item]`` for every item of every batch ``sampler``
    yields; ``dataset`` defaults to the split itself. A sampler that yields groups of rows (packs)
    pairs with a dataset view that indexes by those groups.
    """

    sampler: Any
    dataset: Any = None


@dataclass
class RunContext:
    """Everything a run has built so far; hooks read it and set the attribute their stage owns."""

    cfg: Any
    choices: dict[str, str | None]
    run_dir: Path
    pm: Any
    tokenizer: Any = None
    datasets: DatasetBundle | None = None
    model: Any = None
    reference_model: Any = None
    training_args: dict[str, Any] = field(default_factory=dict)
    data_collator: Any = None
    #: Plugin-built batching per split (``"train"``, ``"eval"``); absent: the trainer's own sampler.
    batching: dict[str, Batching] = field(default_factory=dict)
    callbacks: list[Any] = field(default_factory=list)
    trainer: Any = None
    train_output: Any = None
    #: Free-form space for plugins, keyed by plugin name, so plugins need not invent attributes.
    extras: dict[str, Any] = field(default_factory=dict)
    #: Lines the kernel prints in the final run summary (plugins may append).
    report_lines: list[str] = field(default_factory=list)

    @property
    def metrics_path(self) -> Path:
        """The run's metrics file: one JSON object a line."""
        return self.run_dir / "metrics.jsonl"
