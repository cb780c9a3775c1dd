"""Axolotl's Cut Cross Entropy plugin as ft's ``kernels=cce`` (ft-axolotl's ``axolotl_keys`` hook)."""

from __future__ import annotations

from typing import Any


def plugins(value: Any, config: dict[str, Any]) -> dict[str, Any] | None:
    """axolotl.integrations.cut_cross_entropy.CutCrossEntropyPlugin: kernels=cce."""
    return {"kernels": "cce"} if "cut_cross_entropy" in str(value) else None


AXOLOTL_KEYS: dict[str, Any] = {
    "plugins": plugins,
    "cut_cross_entropy": "no effect: the plugins: entry selects Cut Cross Entropy",
}
