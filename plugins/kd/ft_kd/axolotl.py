"""Axolotl's knowledge-distillation plugin and ``kd_*`` keys as ft's ``method=kd`` (ft-axolotl's hook)."""

from __future__ import annotations

from typing import Any


def plugins(value: Any, config: dict[str, Any]) -> dict[str, Any] | None:
    """Axolotl distils from top-k log-probabilities stored in the rows; ft's default teacher is the model
    itself (method.teacher=self); give method.logprobs=<ft kd dump folder> for an offline teacher."""
    return {"method": "kd"} if ".kd." in str(value) or str(value).endswith(".kd") else None


def _kd(ft_key: str) -> Any:
    def rule(value: Any, config: dict[str, Any]) -> dict[str, Any] | str:
        if not any(".kd" in str(p) for p in config.get("plugins") or []):
            return "no effect: the KD plugin is not in plugins:"
        return {ft_key: value}
    rule.__doc__ = f"{ft_key} with the KD plugin"
    return rule


AXOLOTL_KEYS: dict[str, Any] = {
    "plugins": plugins,
    "kd_alpha": _kd("method.kd_alpha"),
    "kd_ce_alpha": _kd("method.ce_alpha"),
    "kd_temperature": _kd("method.temperature"),
    "kd_top_k_before_softmax": "no effect: ft keeps the teacher's top-k log-probabilities",
    "kd_trainer": "no effect: ft's KD trainer",
}
