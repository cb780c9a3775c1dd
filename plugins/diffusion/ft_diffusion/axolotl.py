"""Axolotl's diffusion plugin and ``diffusion:`` keys as ft's ``method=diffusion`` (ft-axolotl's hook)."""

from __future__ import annotations

from typing import Any

#: diffusion: keys and ft's method keys.
KEYS = {"noise_schedule": "method.noise_schedule", "min_mask_ratio": "method.min_mask_ratio",
        "max_mask_ratio": "method.max_mask_ratio", "eps": "method.eps", "importance_weighting": "method.importance_weighting",
        "mask_token_str": "method.mask_token", "num_diffusion_steps": "method.generation.steps",
        "generation_temperature": "method.generation.temperature"}
NO_EFFECT = ("generate_samples", "generation_interval", "generation_max_length", "num_generation_samples")


def plugins(value: Any, config: dict[str, Any]) -> dict[str, Any] | None:
    """axolotl.integrations.diffusion.DiffusionPlugin: method=diffusion."""
    return {"method": "diffusion"} if "diffusion" in str(value) else None


def diffusion(value: Any, config: dict[str, Any]) -> dict[str, Any]:
    """The mask token is named by its text in ft (mask_token_str); generate_samples: false stops the samples."""
    if not isinstance(value, dict):
        raise ValueError("expected a mapping")
    out: dict[str, Any] = {}
    for key, item in value.items():
        if key in KEYS:
            out[KEYS[key]] = float(item) if key == "eps" else item
        elif key == "generate_samples" and item is False:
            out["method.sample_every"] = 0
        elif key == "mask_token_id" and "mask_token_str" not in value:
            raise ValueError("mask_token_id: ft names the mask token; give diffusion.mask_token_str (the token's text)")
        elif key not in NO_EFFECT and key != "mask_token_id":
            raise ValueError(f"diffusion.{key}: not an option of ft's diffusion method (docs/diffusion.md)")
    return out


AXOLOTL_KEYS: dict[str, Any] = {"plugins": plugins, "diffusion": diffusion}
