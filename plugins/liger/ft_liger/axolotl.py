"""Axolotl's Liger plugin and ``liger_*`` keys as ft's ``kernels=liger`` (ft-axolotl's ``axolotl_keys`` hook)."""

from __future__ import annotations

from typing import Any


def plugins(value: Any, config: dict[str, Any]) -> dict[str, Any] | None:
    """Each part follows its liger_* key; a part the file does not switch on stays off (as in Axolotl)."""
    if "liger" not in str(value).lower():
        return None
    return {"kernels": "liger", "kernels.fused_linear_cross_entropy": bool(config.get("liger_fused_linear_cross_entropy")),
            "kernels.rms_norm": bool(config.get("liger_rms_norm")), "kernels.rope": bool(config.get("liger_rope")),
            "kernels.swiglu": bool(config.get("liger_glu_activation"))}


def _part(value: Any, config: dict[str, Any]) -> str:
    """Read by the plugins: entry (kernels.rms_norm, rope, swiglu, fused_linear_cross_entropy)."""
    return "no effect: set with the plugins: entry" if any("liger" in str(p).lower() for p in config.get("plugins") or []) \
        else "no effect: the Liger plugin is not in plugins:"


AXOLOTL_KEYS: dict[str, Any] = {
    "plugins": plugins,
    "liger_fused_linear_cross_entropy": _part,
    "liger_rms_norm": _part,
    "liger_rope": _part,
    "liger_glu_activation": _part,
    "liger_layer_norm": "no effect: for LayerNorm models; ft's Liger covers RMSNorm families",
    "liger_cross_entropy": "only false: Liger's unfused cross entropy (the fused one is liger_fused_linear_cross_entropy)",
}
