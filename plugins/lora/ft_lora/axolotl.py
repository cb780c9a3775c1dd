"""Axolotl's LoRA keys as ft's ``adapter=lora`` (ft-axolotl's ``axolotl_keys`` hook)."""

from __future__ import annotations

from typing import Any


def _has_adapter(config: dict[str, Any]) -> bool:
    return config.get("adapter") in ("lora", "qlora")


def adapter(value: Any, config: dict[str, Any]) -> dict[str, Any] | None:
    """adapter: lora on a full-precision base: ft's adapter=lora."""
    if value != "lora" or config.get("load_in_8bit") or config.get("load_in_4bit"):
        return None  # qlora, and lora on a quantised base: ft-qlora's
    return {"adapter": "lora"}


def _copy(ft_key: str) -> Any:
    def rule(value: Any, config: dict[str, Any]) -> dict[str, Any] | str:
        return {ft_key: value} if _has_adapter(config) else "no effect: no adapter (a full fine-tune)"
    rule.__doc__ = f"{ft_key} (no effect without an adapter, as in Axolotl)"
    return rule


def target_modules(value: Any, config: dict[str, Any]) -> dict[str, Any] | str:
    """Added to every linear layer when lora_target_linear is also true (all-linear covers them)."""
    if not _has_adapter(config):
        return "no effect: no adapter (a full fine-tune)"
    if config.get("lora_target_linear"):
        return "no effect: lora_target_linear targets every linear layer"
    if isinstance(value, str):
        return {"adapter.target_modules": value}  # a regular expression, full match (PEFT's meaning in both)
    return {"adapter.target_modules": [str(v) for v in value]}


def target_linear(value: Any, config: dict[str, Any]) -> dict[str, Any] | str:
    """Every linear layer except the output head: ft's all-linear."""
    if not _has_adapter(config):
        return "no effect: no adapter (a full fine-tune)"
    if not value:
        return "no effect: lora_target_modules names the layers"
    return {"adapter.target_modules": "all-linear"}


def _lora_kernel(value: Any, config: dict[str, Any]) -> str:
    """Axolotl's fused LoRA Triton kernels: speed only."""
    return "no effect: Axolotl's fused LoRA Triton kernels change speed, not the result"


AXOLOTL_KEYS: dict[str, Any] = {
    "adapter": adapter,
    "lora_r": _copy("adapter.r"),
    "lora_alpha": _copy("adapter.alpha"),
    "lora_dropout": _copy("adapter.dropout"),
    "lora_target_modules": target_modules,
    "lora_target_linear": target_linear,
    "lora_modules_to_save": _copy("adapter.modules_to_save"),
    "lora_model_dir": _copy("adapter.continue_from"),
    "peft_use_rslora": _copy("adapter.use_rslora"),
    "peft_use_dora": _copy("adapter.use_dora"),
    "loraplus_lr_ratio": _copy("adapter.loraplus_lr_ratio"),
    "loraplus_lr_embedding": _copy("adapter.loraplus_lr_embedding"),
    "lora_fan_in_fan_out": "only false: fan_in_fan_out (GPT-2 style Conv1D weights)",
    "lora_mlp_kernel": _lora_kernel,
    "lora_qkv_kernel": _lora_kernel,
    "lora_o_kernel": _lora_kernel,
    "lora_embedding_kernel": _lora_kernel,
}
