"""Typed schemas of the data options (``data=alpaca``, ``chat``, ``completion``), read at ``ft validate``.

``DataConfig`` is the section every data option of this plugin shares; other plugins' data options that use
this data stage (``data=default_task``) extend it. Must not import torch.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal

from ft.api import bounded, named, path_field

TrainOnEos = Literal["all", "turn", "last", "none"]


@dataclass
class DatasetConfig:
    """One entry of ``data.datasets`` / ``data.val_datasets``; unset format options come from ``data.*``."""

    path: str = "???"
    format: str | None = named(None, registry="dataset_formats")
    split: str = "train"
    name: str | None = None
    data_files: str | list[str] | None = None
    max_rows: int | None = bounded(None, ge=1)
    train_on_inputs: bool | None = None
    field: str | None = None
    field_messages: str | None = None
    message_property_mappings: dict[str, str] | None = None
    roles: dict[str, list[str]] | None = None
    roles_to_train: list[str] | None = None
    train_on_eos: TrainOnEos | None = None
    eot_tokens: list[str] | None = None
    train_on_eot: TrainOnEos | None = None
    message_field_training: str | None = None
    field_system: str | None = None
    chat_template: str | None = None
    field_segments: str | None = None
    template: str | None = None
    train_marker: str | None = None
    add_eos: bool | None = None


@dataclass
class DataConfig:
    """The data stage (see docs/data.md): sources, format and its options, length policy, cache."""

    path: str | None = path_field()
    format: str = named("alpaca", registry="dataset_formats")
    datasets: list[DatasetConfig] = dataclasses.field(default_factory=list)
    sequence_len: int = bounded(512, ge=1)
    val_size: float = bounded(0.0, ge=0)
    val_path: str | None = path_field()
    val_datasets: list[DatasetConfig] = dataclasses.field(default_factory=list)
    train_on_inputs: bool = False
    max_rows: int | None = bounded(None, ge=1)
    shuffle: bool = True
    seed: int | None = bounded(None, ge=0)
    too_long: Literal["drop", "truncate", "error"] = "drop"
    min_len: int = bounded(2, ge=0)
    bad_rows: Literal["error", "drop"] = "error"
    cache: bool = True
    num_proc: int | None = bounded(None, ge=1)
    # format options (each dataset may override them)
    field: str = "text"
    field_messages: str = "messages"
    message_property_mappings: dict[str, str] | None = None
    roles: dict[str, list[str]] | None = None
    roles_to_train: list[str] = dataclasses.field(default_factory=lambda: ["assistant"])
    train_on_eos: TrainOnEos = "turn"
    eot_tokens: list[str] | None = None
    train_on_eot: TrainOnEos | None = None
    message_field_training: str | None = "train"
    field_system: str = "system"
    chat_template: str | None = None
    field_segments: str = "segments"
    template: str | None = None
    train_marker: str = "{train}"
    add_eos: bool = True


#: The data options this plugin provides, each checked against ``DataConfig``.
OPTIONS = ("alpaca", "chat", "completion")
SCHEMAS: dict[str, type] = {f"data/{option}": DataConfig for option in OPTIONS}
