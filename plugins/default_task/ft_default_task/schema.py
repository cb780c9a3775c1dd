"""The schema of ``data=default_task``: ft-data's ``DataConfig`` with the task's own ``data.task`` section."""

from __future__ import annotations

from dataclasses import dataclass, field

from ft.api import bounded
from ft_data.schema import DataConfig


@dataclass
class DefaultTaskConfig:
    train_rows: int = bounded(480, ge=1)
    eval_rows: int = bounded(64, ge=0)
    seed: int = 1234


@dataclass
class DefaultTaskDataConfig(DataConfig):
    """``data=default_task``: the data stage's options, and how many rows the task generates."""

    task: DefaultTaskConfig = field(default_factory=DefaultTaskConfig)


SCHEMAS: dict[str, type] = {"data/default_task": DefaultTaskDataConfig}
