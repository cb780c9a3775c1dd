"""Typed schemas of the kernel's config groups, and the validator that checks a composed config.

Schemas are plain dataclasses. Plugins contribute theirs through the ``config_schemas`` hook, keyed
``"group/option"``; the kernel's are keyed by group. Validation reports one problem as one line:
the key, the value, what was expected, and a "did you mean" where a close name exists.
This module must not import torch: ``ft validate`` runs without it.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ft.errors import ConfigError, did_you_mean


def path_field(default: Any = None, **kwargs: Any) -> Any:
    """A field naming a file or folder that must exist when set."""
    return field(default=default, metadata={"path": True, **kwargs})


@dataclass
class ModelConfig:
    name_or_path: str = "builtin:smollm2-135m-instruct"
    tokenizer: str | None = None
    revision: str | None = None
    trust_remote_code: bool = False
    dtype: Literal["float32", "bfloat16", "float16", "auto"] = "float32"
    attn_implementation: str | None = "sdpa"
    chat_template: str | None = None


@dataclass
class DefaultTaskConfig:
    train_rows: int = 480
    eval_rows: int = 64
    seed: int = 1234


TrainOnEos = Literal["all", "turn", "last", "none"]


@dataclass
class DatasetConfig:
    """One entry of ``data.datasets`` / ``data.val_datasets``; unset format options come from ``data.*``."""

    path: str = "???"
    format: str | None = None
    split: str = "train"
    name: str | None = None
    data_files: str | list[str] | None = None
    max_rows: int | None = None
    train_on_inputs: bool | None = None
    field: str | None = None
    field_messages: str | None = None
    message_property_mappings: dict[str, str] | None = None
    roles: dict[str, list[str]] | None = None
    roles_to_train: list[str] | None = None
    train_on_eos: TrainOnEos | None = None
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
    format: str = "alpaca"
    datasets: list[DatasetConfig] = dataclasses.field(default_factory=list)
    sequence_len: int = 512
    val_size: float = 0.0
    val_path: str | None = path_field()
    val_datasets: list[DatasetConfig] = dataclasses.field(default_factory=list)
    train_on_inputs: bool = False
    max_rows: int | None = None
    shuffle: bool = True
    seed: int | None = None
    too_long: Literal["drop", "truncate", "error"] = "drop"
    min_len: int = 2
    bad_rows: Literal["error", "drop"] = "error"
    cache: bool = True
    num_proc: int | None = None
    # format options (each dataset may override them)
    field: str = "text"
    field_messages: str = "messages"
    message_property_mappings: dict[str, str] | None = None
    roles: dict[str, list[str]] | None = None
    roles_to_train: list[str] = dataclasses.field(default_factory=lambda: ["assistant"])
    train_on_eos: TrainOnEos = "turn"
    message_field_training: str | None = "train"
    field_system: str = "system"
    chat_template: str | None = None
    field_segments: str = "segments"
    template: str | None = None
    train_marker: str = "{train}"
    add_eos: bool = True
    task: DefaultTaskConfig | None = None


@dataclass
class OptimConfig:
    name: str = "adamw_torch"
    lr: float = 2e-5
    weight_decay: float = 0.0
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8
    max_grad_norm: float = 1.0
    scheduler: str = "cosine"
    warmup_steps: float = 0


@dataclass
class TrainerConfig:
    micro_batch_size: int = 4
    gradient_accumulation_steps: int = 1
    num_epochs: float = 1.0
    max_steps: int = -1
    logging_steps: int = 5
    eval_steps: int | None = None
    save_steps: int | None = None
    save_total_limit: int | None = 2
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"
    gradient_checkpointing: bool = False
    dataloader_num_workers: int = 0
    report_to: list[str] = field(default_factory=list)


@dataclass
class SftMethodConfig:
    name: str = "sft"


@dataclass
class RunConfig:
    root: str = "runs"
    name: str = ""
    resume_from: str | None = None
    save_final_model: bool = True
    plot: bool = True


KERNEL_SCHEMAS: dict[str, type] = {
    "model": ModelConfig,
    "data": DataConfig,
    "optim": OptimConfig,
    "trainer": TrainerConfig,
    "method/sft": SftMethodConfig,
    "run": RunConfig,
}

TOP_LEVEL_SCALARS: dict[str, Any] = {"seed": int}

_NUMBER_HINT = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return " or ".join(_type_name(a) for a in args) + " (or null)"
    if origin in (list, tuple):
        return "a list"
    if origin is dict:
        return "a mapping"
    if dataclasses.is_dataclass(tp):
        return "a mapping"
    return _NUMBER_HINT.get(tp, getattr(tp, "__name__", str(tp)))


def _matches(value: Any, tp: Any) -> bool:
    if tp is Any:
        return True
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, a) for a in typing.get_args(tp))
    if tp is type(None):
        return value is None
    if origin is Literal:
        return value in typing.get_args(tp)
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            return False
        args = typing.get_args(tp)
        return not args or all(_matches(v, args[0]) for v in value)
    if origin is dict:
        return isinstance(value, dict)
    if dataclasses.is_dataclass(tp):
        return isinstance(value, dict)
    if tp is bool:
        return isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if tp is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if tp is str:
        return isinstance(value, str)
    return isinstance(value, tp) if isinstance(tp, type) else True


def _dataclass_of(tp: Any) -> type | None:
    """The dataclass inside ``tp`` (``X`` or ``X | None``), if any."""
    if dataclasses.is_dataclass(tp):
        return tp  # type: ignore[return-value]
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        for arg in typing.get_args(tp):
            if dataclasses.is_dataclass(arg):
                return arg
    return None


def validate_node(prefix: str, node: Any, schema: type) -> None:
    """Check one config section against a dataclass schema; raise :class:`ConfigError` on the first problem."""
    if not isinstance(node, dict):
        raise ConfigError(f"{prefix}={node!r} is not valid: expected a mapping of keys")
    hints = typing.get_type_hints(schema)
    fields = {f.name: f for f in dataclasses.fields(schema)}
    for key in node:
        if key not in fields:
            raise ConfigError(
                f"unknown config key '{prefix}.{key}'{did_you_mean(str(key), fields)}; "
                f"valid keys under '{prefix}': {', '.join(sorted(fields))}"
            )
    for name, fld in fields.items():
        key = f"{prefix}.{name}"
        if name not in node:
            continue
        value = node[name]
        if value == "???":
            raise ConfigError(f"'{key}' is required: set it, for example {key}=...")
        tp = hints[name]
        nested = _dataclass_of(tp)
        if nested is not None and isinstance(value, dict):
            validate_node(key, value, nested)
            continue
        if not _matches(value, tp):
            raise ConfigError(f"{key}={value!r} is not valid: expected {_type_name(tp)}")
        if fld.metadata.get("path") and value is not None and not str(value).startswith(("hf://", "hub:")):
            if not Path(str(value)).expanduser().exists():
                raise ConfigError(f"{key}={value!r}: no such file or folder; check the path")


def validate_config(
    cfg: dict[str, Any],
    choices: dict[str, str | None],
    schemas: dict[str, type],
    known_groups: set[str],
) -> None:
    """Validate every section of a composed config (a plain dict) against the known schemas."""
    allowed_top = set(TOP_LEVEL_SCALARS) | known_groups | {k.split("/")[0] for k in schemas}
    for key in cfg:
        if key not in allowed_top:
            raise ConfigError(f"unknown config key '{key}'{did_you_mean(key, allowed_top)}")
    for key, tp in TOP_LEVEL_SCALARS.items():
        if key in cfg and not _matches(cfg[key], tp):
            raise ConfigError(f"{key}={cfg[key]!r} is not valid: expected {_type_name(tp)}")
    for section, node in cfg.items():
        if section in TOP_LEVEL_SCALARS:
            continue
        option = choices.get(section)
        schema = schemas.get(f"{section}/{option}") if option else None
        schema = schema or schemas.get(section)
        if schema is not None:
            validate_node(section, node, schema)
