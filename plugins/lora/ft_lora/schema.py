"""The typed schema of ``adapter=lora`` and its cross-field checks (torch-free: ``ft validate`` uses it)."""

from __future__ import annotations

import json
import re
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from ft.api import ConfigError, bounded, did_you_mean, path_field

#: ``adapter.init`` values and the PEFT ``init_lora_weights`` they stand for.
INIT_CHOICES = ("default", "gaussian", "orthogonal", "pissa", "pissa_niter_<N>", "olora")
ALL_LINEAR = "all-linear"


@dataclass
class LoraAdapterConfig:
    """``adapter=lora``: every key of ``ft_lora/conf/adapter/lora.yaml``."""

    r: int = bounded(16, ge=1, expected="a rank of at least 1")
    alpha: int = bounded(32, gt=0, expected="a positive number")
    dropout: float = bounded(0.05, ge=0, lt=1, expected="a number in [0, 1)")
    target_modules: list[str] | str = ALL_LINEAR
    exclude_modules: list[str] | None = None
    modules_to_save: list[str] | None = None
    bias: Literal["none", "all", "lora_only"] = "none"
    use_dora: bool = False
    use_rslora: bool = False
    init: str = "default"
    continue_from: str | None = path_field()
    loraplus_lr_ratio: float | None = bounded(None, gt=0, expected="a positive ratio (LoRA+ uses 2 to 32)")
    loraplus_lr_embedding: float = bounded(1e-6, gt=0)


def peft_init_value(init: str) -> bool | str:
    """``adapter.init`` as PEFT's ``init_lora_weights`` (``default`` is ``True``)."""
    return True if init == "default" else init


def is_base_rewriting(init: str) -> bool:
    """PiSSA and OLoRA move part of the base weights into the adapter at initialisation."""
    return init == "olora" or init.startswith("pissa")


def check_adapter_values(adapter: Any) -> None:
    """Cross-field rules of ``adapter.*`` a schema cannot express; one-line :class:`ConfigError`."""
    # r >= 1, alpha > 0 and dropout in [0, 1) are the schema's bounds.
    targets = adapter.target_modules
    if isinstance(targets, str) and targets != ALL_LINEAR and re.fullmatch(r"[\w.]+", targets):
        raise ConfigError(  # a bare name is a forgotten list far more often than a regular expression
            f"adapter.target_modules={targets!r} is not valid: expected a list of module names "
            f"(adapter.target_modules=[{targets}]) or {ALL_LINEAR}, or a regular expression matched against whole "
            f"module names (e.g. '.*\\.{targets}')"
        )
    if isinstance(targets, str) and targets != ALL_LINEAR:  # PEFT's meaning: a regular expression, full match
        try:
            re.compile(targets)
        except re.error as exc:
            raise ConfigError(
                f"adapter.target_modules={targets!r} is not valid: a string other than {ALL_LINEAR} is a regular "
                f"expression matched against whole module names ({exc}); or give a list of module names"
            ) from None
    if not isinstance(targets, str) and not list(targets):
        raise ConfigError(f"adapter.target_modules=[] is not valid: name at least one module, or use {ALL_LINEAR}")
    init = adapter.init
    if init not in ("default", "gaussian", "orthogonal", "olora", "pissa") and not re.fullmatch(r"pissa_niter_\d+", init):
        named = [c for c in INIT_CHOICES if "<" not in c]
        raise ConfigError(
            f"adapter.init={init!r} is not valid{did_you_mean(init, named)}: expected one of "
            f"{', '.join(INIT_CHOICES)}"
        )
    if init == "orthogonal" and adapter.r % 2:
        raise ConfigError(f"adapter.init=orthogonal needs an even rank, got adapter.r={adapter.r}")
    if adapter.continue_from is not None:
        adapter_folder(adapter.continue_from, "adapter.continue_from")


def adapter_folder(path: str, key: str) -> Path:
    """The PEFT adapter folder at ``path`` (itself, or ``path/model`` for an ft run folder)."""
    root = Path(path).expanduser()
    for candidate in (root, root / "model"):
        if (candidate / "adapter_config.json").is_file():
            return candidate
    raise ConfigError(
        f"{key}={path!r}: no PEFT adapter there (expected adapter_config.json in the folder or in its "
        f"model/ subfolder)"
    )


# ---------------------------------------------------------------------------------------------------
# Early target check: module names from the safetensors headers of a local model, without torch
# ---------------------------------------------------------------------------------------------------


def weight_module_names(model_dir: Path) -> set[str] | None:
    """Full names of the modules with a ≥2-D ``weight`` in a local model folder, or ``None`` if unknown.

    Read from safetensors headers only; a tied output head (``tie_word_embeddings``) has no tensor of
    its own, so it is added from ``config.json``.
    """
    index = model_dir / "model.safetensors.index.json"
    files = sorted(model_dir.glob("*.safetensors"))
    if not index.is_file() and not files:
        return None
    names: set[str] = set()
    try:
        for file in files:
            with file.open("rb") as handle:
                (length,) = struct.unpack("<Q", handle.read(8))
                header = json.loads(handle.read(length))
            for name, meta in header.items():
                if name.endswith(".weight") and isinstance(meta, dict) and len(meta.get("shape", [])) >= 2:
                    names.add(name[: -len(".weight")])
        config = json.loads((model_dir / "config.json").read_text())
    except (OSError, ValueError, struct.error):
        return None
    if config.get("tie_word_embeddings", False) or (config.get("text_config") or {}).get("tie_word_embeddings"):
        names.add("lm_head")
    return names


def matches(module_name: str, target: str) -> bool:
    """PEFT's rule for a target given in a list: the full name, or a ``.``-separated suffix of it."""
    return module_name == target or module_name.endswith("." + target)


def unmatched_target_message(target: str, module_names: set[str] | list[str], what: str) -> str:
    """The one-line error for a ``target`` that matches none of ``module_names``."""
    short = sorted({name.rsplit(".", 1)[-1] for name in module_names})
    return (
        f"adapter.target_modules: {target!r} matches no {what} in the model{did_you_mean(target, short)}; "
        f"it could be one of: {', '.join(short)}"
    )


def early_target_check(adapter: Any, model_dir: Path) -> None:
    """Catch a target-module typo at ``ft validate`` time when the model is a local folder."""
    if isinstance(adapter.target_modules, str) or adapter.continue_from is not None:
        return
    names = weight_module_names(model_dir)
    if not names:
        return
    for target in adapter.target_modules:
        if not any(matches(name, str(target)) for name in names):
            raise ConfigError(unmatched_target_message(str(target), names, "layer with weights"))
