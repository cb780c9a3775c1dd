"""Axolotl's quantised-base keys as ft's ``adapter=qlora`` (ft-axolotl's ``axolotl_keys`` hook)."""

from __future__ import annotations

from typing import Any


def _bits(config: dict[str, Any]) -> int:
    return 8 if config.get("load_in_8bit") else 4


def adapter(value: Any, config: dict[str, Any]) -> dict[str, Any] | None:
    """LoRA on a bitsandbytes-quantised base; compute (and, under FSDP, storage) dtype bf16 when bf16 is on, as in Axolotl."""
    quantised = value == "qlora" or (value == "lora" and (config.get("load_in_8bit") or config.get("load_in_4bit")))
    if not quantised:
        return None
    out: dict[str, Any] = {"adapter": "qlora", "adapter.bits": _bits(config)}
    bf16 = config.get("bf16") in (True, "auto")
    if bf16:
        out["adapter.compute_dtype"] = "bfloat16"
    if config.get("fsdp_config") or config.get("fsdp"):  # FSDP shards one float dtype: store the 4 bits in it
        out["adapter.quant_storage"] = "bfloat16" if bf16 else "float32"
    return out


def _load_in(bits: int) -> Any:
    def rule(value: Any, config: dict[str, Any]) -> dict[str, Any] | str:
        if not value:
            return "no effect: off"
        if config.get("adapter") not in ("lora", "qlora"):
            raise ValueError(f"a {bits}-bit base without an adapter cannot train in ft; add adapter: lora")
        return {"adapter.bits": _bits(config)}
    rule.__doc__ = f"adapter.bits={bits} with adapter: lora or qlora (adapter=qlora)"
    return rule


def bnb_config_kwargs(value: Any, config: dict[str, Any]) -> dict[str, Any]:
    """bnb_4bit_* as adapter.double_quant, quant_type, compute_dtype, quant_storage."""
    names = {"bnb_4bit_use_double_quant": "adapter.double_quant", "bnb_4bit_quant_type": "adapter.quant_type",
             "bnb_4bit_compute_dtype": "adapter.compute_dtype", "bnb_4bit_quant_storage": "adapter.quant_storage"}
    unknown = sorted(set(value) - set(names)) if isinstance(value, dict) else ["(not a mapping)"]
    if unknown:
        raise ValueError(f"{', '.join(unknown)}: ft's options are {', '.join(names)}")
    return {names[key]: item for key, item in value.items()}


AXOLOTL_KEYS: dict[str, Any] = {
    "adapter": adapter,
    "load_in_4bit": _load_in(4),
    "load_in_8bit": _load_in(8),
    "bnb_config_kwargs": bnb_config_kwargs,
}
