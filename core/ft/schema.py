"""Typed schemas of the kernel's config groups, and the validator that checks a composed config.

Schemas are plain dataclasses. Plugins contribute theirs through the ``config_schemas`` hook, keyed
``"group/option"``; the kernel's are keyed by group. Validation reports one problem as one line:
the key, the value, what was expected, and a "did you mean" where a close name exists.
This module must not import torch: ``ft validate`` runs without it.
"""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ft.errors import ConfigError, did_you_mean


def path_field(default: Any = None, **kwargs: Any) -> Any:
    """A field naming a file or folder that must exist when set."""
    return field(default=default, metadata={"path": True, **kwargs})


def path_exists(value: str, key: str) -> bool:
    """Whether a configured path exists; a path the OS cannot even look up (a name over 255 bytes...)
    is a :class:`ConfigError` naming the key, not a traceback."""
    try:
        return Path(value).expanduser().exists()
    except (OSError, ValueError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise ConfigError(f"{key}={value[:60] + '...' if len(value) > 60 else value!r}: not a usable path ({reason})") from exc


def bounded(default: Any = None, *, ge: float | None = None, gt: float | None = None, le: float | None = None,
            lt: float | None = None, expected: str | None = None, **kwargs: Any) -> Any:
    """A numeric field with range bounds, checked at ``ft validate`` (NaN and infinity are never in range).

    ``expected`` words the error in the domain's terms ("a rank of at least 1"); by default it says
    "an integer >= 1" or "a number > 0".
    """
    bounds = {k: v for k, v in (("ge", ge), ("gt", gt), ("le", le), ("lt", lt)) if v is not None}
    metadata = {"bounds": bounds, **({"expected": expected} if expected else {}), **kwargs}
    return field(default=default, metadata=metadata)


def folder_name(default: str = "", **kwargs: Any) -> Any:
    """A string field that names one folder (a run's name): no path separators, not ``.`` or ``..``, at most
    255 bytes, so what it names stays inside the folder it is joined to."""
    return field(default=default, metadata={"folder_name": True, **kwargs})


#: The largest integer any config field takes (a realistic cap: batch sizes, steps, ranks, lengths, seeds).
INT_CAP = 2**31 - 1


def check_folder_name(key: str, value: str) -> None:
    """Raise unless ``value`` is a usable single folder name."""
    shown = value if len(value) <= 60 else value[:60] + "..."
    if not value or value in (".", "..") or any(c in value for c in ("/", "\\", "\0")):
        raise ConfigError(f"{key}={shown!r} is not valid: expected one folder name (no '/', not '.' or '..'); "
                          f"the folder is created under run.root")
    if len(value.encode("utf-8")) > 255:
        raise ConfigError(f"{key}='{value[:40]}...' ({len(value)} characters) is not valid: expected a folder name "
                          f"of at most 255 bytes")


def named(default: Any = None, *, registry: str, **kwargs: Any) -> Any:
    """A string field that must name an entry of a collected hook's result (``registry="dataset_formats"``).

    A value with a colon (``my_module:function``) is an import path, not a registry name: the plugin that
    reads the field checks it."""
    return field(default=default, metadata={"registry": registry, **kwargs})


#: transformers' ``SchedulerType`` values (a test keeps this list equal to transformers').
SchedulerName = Literal["linear", "cosine", "cosine_with_restarts", "polynomial", "constant", "constant_with_warmup",
                        "inverse_sqrt", "reduce_lr_on_plateau", "cosine_with_min_lr", "cosine_warmup_with_min_lr",
                        "warmup_stable_decay", "greedy"]
#: transformers' ``OptimizerNames`` values (a test keeps this list equal to transformers').
OptimizerName = Literal[
    "adamw_torch", "adamw_torch_fused", "adamw_torch_xla", "adamw_torch_npu_fused", "adafactor", "adamw_anyprecision",
    "adamw_torch_4bit", "adamw_torch_8bit", "ademamix", "sgd", "adagrad", "adamw_bnb_8bit", "adamw_8bit", "ademamix_8bit",
    "lion_8bit", "lion_32bit", "paged_adamw_32bit", "paged_adamw_8bit", "paged_ademamix_32bit", "paged_ademamix_8bit",
    "paged_lion_32bit", "paged_lion_8bit", "rmsprop", "rmsprop_bnb", "rmsprop_bnb_8bit", "rmsprop_bnb_32bit",
    "galore_adamw", "galore_adamw_8bit", "galore_adafactor", "galore_adamw_layerwise", "galore_adamw_8bit_layerwise",
    "galore_adafactor_layerwise", "lomo", "adalomo", "grokadamw", "schedule_free_radam", "schedule_free_adamw",
    "schedule_free_sgd", "apollo_adamw", "apollo_adamw_layerwise", "stable_adamw"]


@dataclass
class OptimConfig:
    name: OptimizerName = "adamw_torch"
    lr: float = bounded(2e-5, gt=0)
    weight_decay: float = bounded(0.0, ge=0)
    beta1: float = bounded(0.9, ge=0, lt=1)
    beta2: float = bounded(0.999, ge=0, lt=1)
    eps: float = bounded(1e-8, gt=0)
    max_grad_norm: float = bounded(1.0, ge=0)
    scheduler: SchedulerName = "cosine"
    warmup_steps: float = bounded(0, ge=0)


@dataclass
class TrainerConfig:
    micro_batch_size: int = bounded(4, ge=1)
    gradient_accumulation_steps: int = bounded(1, ge=1)
    num_epochs: float = bounded(1.0, gt=0)
    max_steps: int = bounded(-1, ge=-1)
    logging_steps: int = bounded(5, ge=1)
    eval_steps: int | float | None = bounded(None, gt=0)  # a float below 1: that fraction of the training steps
    save_steps: int | float | None = bounded(None, gt=0)
    save_total_limit: int | None = bounded(2, ge=1)
    save_every_minutes: float | None = bounded(10.0, gt=0)
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"
    gradient_checkpointing: bool = False
    dataloader_num_workers: int = bounded(0, ge=0)
    #: transformers' reporting integrations; a builtin plugin checks the names and that their packages are
    #: installed.
    report_to: list[str] = field(default_factory=list)


@dataclass
class RunConfig:
    root: str = "runs"
    name: str = folder_name("")
    resume_from: str | None = None
    save_final_model: bool = True
    plot: bool = True


@dataclass
class SweepConfig:
    """What a sweep (``ft run -m``) optimises: a final metric of each job (``summary.json``)."""

    objective: str | None = None
    direction: Literal["minimize", "maximize"] = "minimize"


@dataclass
class DistConfig:
    """How many processes a run uses; the fields every ``dist`` option shares (plugins subclass it).

    Under a launcher (torchrun, ``accelerate launch``, Slurm's srun, Kubernetes) these are read from its
    environment and ``nproc_per_node`` may stay 1; set here, ``ft run`` starts the processes itself
    through torch.distributed's elastic launcher (what torchrun runs).
    """

    nproc_per_node: int = bounded(1, ge=1, expected="a number of processes of at least 1")
    nnodes: int = bounded(1, ge=1, expected="a number of machines of at least 1")
    node_rank: int = bounded(0, ge=0)
    rdzv_endpoint: str | None = None
    rdzv_id: str | int = "ft"
    timeout_minutes: float = bounded(30.0, gt=0)


@dataclass
class DdpConfig(DistConfig):
    """``dist=ddp``: plain data parallel (torch DistributedDataParallel, through the trainer)."""

    find_unused_parameters: bool = False
    bucket_cap_mb: int | None = bounded(None, ge=1)


KERNEL_SCHEMAS: dict[str, type] = {
    "optim": OptimConfig,
    "trainer": TrainerConfig,
    "run": RunConfig,
    "sweep": SweepConfig,
    "dist": DistConfig,
    "dist/ddp": DdpConfig,
}

TOP_LEVEL_SCALARS: dict[str, Any] = {"seed": int}
#: Bounds of the top-level scalars (the seed: what numpy and torch accept).
_TOP_LEVEL_BOUNDS: dict[str, dict[str, float]] = {"seed": {"ge": 0, "le": 2**32 - 1}}

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
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return tp
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        for arg in typing.get_args(tp):
            if isinstance(arg, type) and dataclasses.is_dataclass(arg):
                return arg
    return None


_BOUND_TEXT = {"ge": ">=", "gt": ">", "le": "<=", "lt": "<"}


def _literal_values(tp: Any) -> list[Any]:
    """The allowed values of a ``Literal`` (or ``Literal | None``) type; empty for other types."""
    if typing.get_origin(tp) is Literal:
        return list(typing.get_args(tp))
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        return [v for a in typing.get_args(tp) for v in _literal_values(a)]
    return []


def _plain_types(tp: Any) -> set[Any]:
    """``{int}`` for ``int``, ``{int, NoneType}`` for ``int | None``..."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        return set(typing.get_args(tp))
    return {tp}


def _check_bounds(key: str, value: Any, bounds: dict[str, float], noun: str = "a number",
                  wording: str | None = None) -> None:
    """Raise when a number is NaN, infinite or outside its field's bounds."""
    import math
    import operator

    if value is None or isinstance(value, bool) or not isinstance(value, (int, float)):
        return
    expected = " and ".join(f"{_BOUND_TEXT[k]} {int(v) if float(v).is_integer() else f'{v:g}'}" for k, v in bounds.items())
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{key}={value!r} is not valid: expected {wording or ('a finite number ' + expected).rstrip()}")
    checks = {"ge": operator.ge, "gt": operator.gt, "le": operator.le, "lt": operator.lt}
    for name, limit in bounds.items():
        if not checks[name](value, limit):
            raise ConfigError(f"{key}={_shown(value)} is not valid: expected {wording or noun + ' ' + expected}")


def validate_node(prefix: str, node: Any, schema: type, registries: dict[str, set[str]] | None = None) -> None:
    """Check one config section against a dataclass schema; raise :class:`ConfigError` on the first problem.

    ``registries`` maps a registry name (``dataset_formats``) to the names it holds, for
    :func:`named` fields; a registry that is not given is not checked.
    """
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
            validate_node(key, value, nested, registries)
            continue
        item = _list_item_dataclass(tp)
        if item is not None and isinstance(value, list):
            for index, entry in enumerate(value):
                if isinstance(entry, dict):
                    validate_node(f"{key}[{index}]", entry, item, registries)
        bad_item = _first_bad_item(value, tp)
        if bad_item is not None:
            index, item, item_tp = bad_item
            hint = did_you_mean(str(item), [str(a) for a in _literal_values(item_tp)]) if isinstance(item, str) else ""
            raise ConfigError(f"{key}[{index}]={item!r} is not valid: expected {_type_name(item_tp)}{hint}")
        if not _matches(value, tp):
            hint = did_you_mean(str(value), [str(a) for a in _literal_values(tp)]) if isinstance(value, str) else ""
            raise ConfigError(f"{key}={_shown(value)} is not valid: expected {_type_name(tp)}{hint}")
        _check_int_cap(key, value)
        if fld.metadata.get("folder_name") and isinstance(value, str):
            check_folder_name(key, value)
        _check_bounds(key, value, fld.metadata.get("bounds", {}), "an integer" if int in _plain_types(tp) else "a number",
                      fld.metadata.get("expected"))
        registry = fld.metadata.get("registry")
        if registry and value is not None and ":" not in str(value) and registries is not None and registry in registries:
            known = registries[registry]
            if value not in known:
                listed = ", ".join(sorted(known)) or f"none (no enabled plugin contributes {registry.replace('_', ' ')})"
                raise ConfigError(f"{key}={value!r}: no such {registry.replace('_', ' ').rstrip('s')}"
                                  f"{did_you_mean(str(value), known)}; available: {listed}")
        if fld.metadata.get("path") and value is not None and not str(value).startswith(("hf://", "hub:")):
            if not path_exists(str(value), key):
                raise ConfigError(f"{key}={value!r}: no such file or folder; check the path")


def _shown(value: Any) -> str:
    """A value for an error line: its repr, cut to 60 characters (a 400-digit number stays readable)."""
    text = repr(value)
    return text if len(text) <= 60 else f"{text[:40]}... ({len(text)} characters)"


def _check_int_cap(key: str, value: Any) -> None:
    """Integers beyond :data:`INT_CAP` overflow torch, numpy and the data loader: refuse them here."""
    for item in value if isinstance(value, list) else [value]:
        if isinstance(item, int) and not isinstance(item, bool) and abs(item) > INT_CAP:
            raise ConfigError(f"{key}={_shown(item)} is not valid: expected an integer of at most {INT_CAP:,} in size")


def _first_bad_item(value: Any, tp: Any) -> tuple[int, Any, Any] | None:
    """``(index, item, item type)`` of the first wrong item of a list value of a ``list[X]`` field."""
    if not isinstance(value, list) or typing.get_origin(tp) not in (list, tuple):
        return None
    args = typing.get_args(tp)
    if not args or dataclasses.is_dataclass(args[0]):
        return None
    return next(((i, v, args[0]) for i, v in enumerate(value) if not _matches(v, args[0])), None)


def _list_item_dataclass(tp: Any) -> type | None:
    """The dataclass ``X`` of a ``list[X]`` field, if any."""
    if typing.get_origin(tp) in (list, tuple):
        args = typing.get_args(tp)
        if args and isinstance(args[0], type) and dataclasses.is_dataclass(args[0]):
            return args[0]
    return None


def schema_for(section: str, choices: dict[str, str | None], schemas: dict[str, type]) -> type | None:
    """The schema of a config section: the selected option's (``adapter/myadapter``), else the group's.

    Several options selected at once (``logger=[a,b]``) merge their configs into one
    section, so their schemas merge too: one dataclass with every option's fields."""
    from ft.plugins import split_choice

    options = split_choice(choices.get(section))
    if len(options) > 1:
        parts = [schemas.get(f"{section}/{option}") for option in options]
        if all(parts):
            return _merged_schema(section, tuple(parts))
        return schemas.get(section)
    option = options[0] if options else None
    return (schemas.get(f"{section}/{option}") if option else None) or schemas.get(section)


@functools.cache
def _merged_schema(section: str, parts: tuple[type, ...]) -> type:
    """One dataclass with the fields of every part; two parts declaring the same field is a plugin error."""
    from ft.errors import PluginError

    fields: dict[str, tuple[str, Any, Any]] = {}
    owners: dict[str, type] = {}
    for part in parts:
        hints = typing.get_type_hints(part)
        for fld in dataclasses.fields(part):
            if fld.name in fields:
                raise PluginError(f"the {section} options {owners[fld.name].__name__} and {part.__name__} both declare "
                                  f"'{fld.name}', so they cannot be selected together")
            copy = dataclasses.field(default=fld.default, default_factory=fld.default_factory, metadata=fld.metadata)
            fields[fld.name] = (fld.name, hints[fld.name], copy)
            owners[fld.name] = part
    return dataclasses.make_dataclass("_".join(p.__name__ for p in parts), list(fields.values()))


def validate_config(
    cfg: dict[str, Any],
    choices: dict[str, str | None],
    schemas: dict[str, type],
    known_groups: set[str],
    registries: dict[str, set[str]] | None = None,
) -> None:
    """Validate every section of a composed config (a plain dict) against the known schemas."""
    allowed_top = set(TOP_LEVEL_SCALARS) | known_groups | {k.split("/")[0] for k in schemas}
    for key in cfg:
        if key not in allowed_top:
            raise ConfigError(f"unknown config key '{key}'{did_you_mean(key, allowed_top)}")
    for key, tp in TOP_LEVEL_SCALARS.items():
        if key in cfg and not _matches(cfg[key], tp):
            raise ConfigError(f"{key}={_shown(cfg[key])} is not valid: expected {_type_name(tp)}")
        if key in cfg:
            _check_bounds(key, cfg[key], _TOP_LEVEL_BOUNDS.get(key, {}), "an integer")
    for section, node in cfg.items():
        if section in TOP_LEVEL_SCALARS:
            continue
        schema = schema_for(section, choices, schemas)
        if schema is not None:
            validate_node(section, node, schema, registries)


# -- the typed config hooks receive -----------------------------------------------------------------


class ConfigSection:
    """A config section no schema describes: attribute access over a plain mapping."""

    def __init__(self, values: dict[str, Any]) -> None:
        self.__dict__.update({k: ConfigSection(v) if isinstance(v, dict) else v for k, v in values.items()})

    def get(self, key: str, default: Any = None) -> Any:
        return self.__dict__.get(key, default)

    def __contains__(self, key: object) -> bool:
        return key in self.__dict__

    def __repr__(self) -> str:
        return f"ConfigSection({self.__dict__!r})"


class FtConfig(ConfigSection):
    """The typed, validated config of a run: each section an instance of its schema dataclass.

    ``cfg.optim.lr`` is a float, ``cfg.adapter`` the selected adapter option's schema instance (or
    ``None`` when no adapter is selected); ``cfg.get("adapter")`` and ``"adapter" in cfg`` work on the root.
    The kernel's sections are typed here; a plugin's sections are its own schema classes.
    """

    seed: int
    optim: OptimConfig
    trainer: TrainerConfig
    run: RunConfig
    sweep: SweepConfig
    #: ``DistConfig`` or a plugin's subclass of it (the selected ``dist`` option's schema).
    dist: Any
    #: Sections of plugins' groups (their schemas, or ``None`` when the group selects nothing).
    model: Any
    data: Any
    method: Any
    adapter: Any
    packing: Any
    kernels: Any
    logger: Any

    def __init__(self, sections: dict[str, Any]) -> None:
        self.__dict__.update(sections)


def instantiate(schema: type, node: dict[str, Any]) -> Any:
    """An instance of ``schema`` from a validated mapping: nested dataclasses built, ints as floats
    where the field is a float."""
    hints = typing.get_type_hints(schema)
    values: dict[str, Any] = {}
    for fld in dataclasses.fields(schema):
        if fld.name not in node:
            continue
        value, tp = node[fld.name], hints[fld.name]
        nested, item = _dataclass_of(tp), _list_item_dataclass(tp)
        if nested is not None and isinstance(value, dict):
            value = instantiate(nested, value)
        elif item is not None and isinstance(value, list):
            value = [instantiate(item, v) if isinstance(v, dict) else v for v in value]
        elif isinstance(value, int) and not isinstance(value, bool) and tp in (float, float | None):
            value = float(value)
        values[fld.name] = value
    return schema(**values)


def build_typed(container: dict[str, Any], choices: dict[str, str | None], schemas: dict[str, type]) -> FtConfig:
    """The :class:`FtConfig` of a validated config container."""
    sections: dict[str, Any] = {}
    for section, node in container.items():
        schema = schema_for(section, choices, schemas) if isinstance(node, dict) else None
        if schema is not None:
            sections[section] = instantiate(schema, node)
        else:
            sections[section] = ConfigSection(node) if isinstance(node, dict) else node
    for group, option in choices.items():
        if option is None:  # an unselected optional group (adapter, packing...) reads as None
            sections.setdefault(group, None)
    return FtConfig(sections)


def to_plain(value: Any) -> Any:
    """A plain dict/list copy of a typed section (dataclass or :class:`ConfigSection`) or value."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, ConfigSection):
        return {k: to_plain(v) for k, v in value.__dict__.items()}
    if isinstance(value, (list, tuple)):
        return [to_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: to_plain(v) for k, v in value.items()}
    return value
