"""Wrap the loaded model with a PEFT LoRA adapter, and save it so plain PEFT can load it back.

Imported only from inside hooks (it imports torch and PEFT).
"""

from __future__ import annotations

import json
import logging
import shutil
import warnings
from pathlib import Path
from typing import Any

from ft.api import ConfigError, RunContext
from ft_lora.inference import ADAPTER_RECORD
from ft_lora.schema import (
    ALL_LINEAR,
    adapter_folder,
    is_base_rewriting,
    matches,
    peft_init_value,
    unmatched_target_message,
)

log = logging.getLogger("ft")

#: Written next to the adapter: the base and how it was quantised (the kernel defines the format;
#: ``ft merge`` and ``ft generate`` read it).
FT_ADAPTER_FILE = ADAPTER_RECORD
#: Where PiSSA/OLoRA runs keep the initial adapter, to convert the trained one back to the original base.
INITIAL_ADAPTER_DIR = "adapter_init"


def adaptable_module_names(model: Any) -> list[str]:
    """Full names of the modules LoRA can wrap (Linear, Embedding, Conv, GPT-2's Conv1D, bnb linears)."""
    import torch
    from transformers.pytorch_utils import Conv1D

    kinds = (torch.nn.Linear, torch.nn.Embedding, torch.nn.Conv1d, torch.nn.Conv2d, Conv1D)
    return [name for name, module in model.named_modules() if name and isinstance(module, kinds)]


def check_target_modules(model: Any, adapter: Any) -> None:
    """Every listed target, and every ``modules_to_save`` entry, must match a module of ``model``.

    PEFT only fails when *no* target matches; one typo among several would silently train less than
    asked, so each name is checked on its own.
    """
    targets = adapter.target_modules
    if isinstance(targets, str) and targets != ALL_LINEAR:
        import re

        if not any(re.fullmatch(targets, name) for name in adaptable_module_names(model)):
            raise ConfigError(f"adapter.target_modules={targets!r}: the regular expression matches no Linear/Embedding "
                              f"layer's full name (e.g. {adaptable_module_names(model)[:1]})")
    elif not isinstance(targets, str):
        names = adaptable_module_names(model)
        for target in targets:
            if not any(matches(name, str(target)) for name in names):
                raise ConfigError(unmatched_target_message(str(target), names, "Linear/Embedding layer"))
    all_names = [name for name, _ in model.named_modules() if name]
    for target in adapter.modules_to_save or []:
        if not any(matches(name, str(target)) for name in all_names):
            message = unmatched_target_message(str(target), adaptable_module_names(model), "module")
            raise ConfigError(message.replace("adapter.target_modules", "adapter.modules_to_save", 1))


def lora_config(adapter: Any) -> Any:
    """PEFT's ``LoraConfig`` for the ``adapter`` config section."""
    from peft import LoraConfig

    targets = adapter.target_modules
    return LoraConfig(
        task_type="CAUSAL_LM",
        r=adapter.r,
        lora_alpha=adapter.alpha,
        lora_dropout=adapter.dropout,
        target_modules=targets if isinstance(targets, str) else [str(t) for t in targets],
        exclude_modules=[str(m) for m in adapter.exclude_modules] if adapter.exclude_modules else None,
        modules_to_save=[str(m) for m in adapter.modules_to_save] if adapter.modules_to_save else None,
        bias=adapter.bias,
        use_dora=adapter.use_dora,
        use_rslora=adapter.use_rslora,
        init_lora_weights=peft_init_value(str(adapter.init)),  # type: ignore[arg-type]  # PEFT's Literal, checked at validate
    )


def is_quantized(model: Any) -> bool:
    """Whether the base model was loaded in 4-bit or 8-bit (bitsandbytes)."""
    return bool(getattr(model, "is_loaded_in_4bit", False) or getattr(model, "is_loaded_in_8bit", False))


def quiet_library_noise() -> None:
    """Silence two messages that say nothing to an ft user: bitsandbytes' import-time note (on CPUs
    with AVX512-BF16) that the optional ``kernels`` package, which downloads from the Hub, is absent,
    and transformers' deprecation of ``is_gradient_checkpointing`` that PEFT still calls."""
    logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)


def wrap_model(model: Any, adapter: Any, run_dir: Path, gradient_checkpointing: bool) -> Any:
    """Return ``model`` wrapped in a trainable ``PeftModel`` (new adapter, or ``continue_from``)."""
    quiet_library_noise()
    from peft import PeftModel, get_peft_model

    if adapter.continue_from is not None:
        folder = adapter_folder(str(adapter.continue_from), "adapter.continue_from")
        wrapped = PeftModel.from_pretrained(model, str(folder), is_trainable=True)
        log.info("lora: continuing the adapter from %s", folder)
    else:
        check_target_modules(model, adapter)
        config = lora_config(adapter)
        wrapped = get_peft_model(model, config)
        if is_base_rewriting(str(adapter.init)):
            save_initial_adapter(wrapped, run_dir / INITIAL_ADAPTER_DIR)
    if gradient_checkpointing and not is_quantized(model):
        # Frozen embeddings give activations without grad; checkpointed blocks then get no gradient.
        wrapped.enable_input_require_grads()
    applied: Any = wrapped.peft_config["default"]  # a LoraConfig
    wrapped_layers = sorted({name.rsplit(".", 1)[-1] for name, module in wrapped.named_modules()
                             if hasattr(module, "lora_A") and "default" in getattr(module, "lora_A", {})})
    log.info("lora: r=%s alpha=%s%s%s on %s", applied.r, applied.lora_alpha,
             " dora" if applied.use_dora else "", " rslora" if applied.use_rslora else "",
             ", ".join(wrapped_layers))
    return wrapped


def save_initial_adapter(model: Any, folder: Path) -> None:
    """Keep the PiSSA/OLoRA starting adapter: PEFT needs it to express the result on the original base."""
    config = model.peft_config["default"]
    init = config.init_lora_weights
    config.init_lora_weights = True  # so that the folder reloads as a plain adapter
    try:
        model.save_pretrained(str(folder))
    finally:
        config.init_lora_weights = init


def base_model_path(ctx: RunContext) -> str:
    """The real folder (or hub id) of the run's base model, never a ``builtin:`` alias."""
    from ft_model.api import resolve_model_path

    return resolve_model_path(str(ctx.cfg.model.name_or_path))


def finish_saved_adapter(ctx: RunContext, output_dir: Path) -> None:
    """Make the saved adapter folder self-sufficient for plain PEFT and for ``ft merge``.

    * PiSSA/OLoRA: re-save the adapter converted to apply to the *original* base weights;
    * ``adapter_config.json``: ``base_model_name_or_path`` names the real base folder;
    * ``ft_adapter.json``: the base and how it was quantized while training (for ``ft merge``).
    """
    config_file = output_dir / "adapter_config.json"
    if not config_file.is_file():
        return
    initial = ctx.run_dir / INITIAL_ADAPTER_DIR
    if initial.is_dir() and (initial / "adapter_config.json").is_file():
        converted = output_dir.with_name(output_dir.name + ".converted")
        shutil.rmtree(converted, ignore_errors=True)
        ctx.model.save_pretrained(str(converted), path_initial_model_for_weight_conversion=str(initial))
        for name in ("adapter_model.safetensors", "adapter_config.json"):
            shutil.move(str(converted / name), str(output_dir / name))
        shutil.rmtree(converted, ignore_errors=True)
        log.info("lora: %s adapter converted to apply to the original base weights", ctx.cfg.adapter.init)
    base = base_model_path(ctx)
    data = json.loads(config_file.read_text())
    data["base_model_name_or_path"] = base
    config_file.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    quantization = getattr(getattr(ctx.model, "config", None), "quantization_config", None)
    record = {
        "base_model": base,
        "base_model_config_name": str(ctx.cfg.model.name_or_path),
        "base_dtype": str(ctx.cfg.model.dtype),
        "adapter": ctx.choices.get("adapter"),
        "base_quantization": _quantization_dict(quantization),
    }
    (output_dir / FT_ADAPTER_FILE).write_text(json.dumps(record, indent=2) + "\n")


def _quantization_dict(quantization: Any) -> dict[str, Any] | None:
    if quantization is None:
        return None
    if isinstance(quantization, dict):
        return quantization
    return json.loads(quantization.to_json_string(use_diff=False))
