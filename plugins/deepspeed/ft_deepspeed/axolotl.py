"""Axolotl's ``deepspeed:`` JSON file as ft's ``dist=zero1|2|3`` (ft-axolotl's ``axolotl_keys`` hook)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any


def deepspeed(value: Any, config: dict[str, Any]) -> dict[str, Any]:
    """Your JSON is used as it is (dist.config_file); its ZeRO stage picks dist=zeroN."""
    path = Path(str(value))
    stage = None
    if path.is_file():
        try:
            stage = json.loads(path.read_text()).get("zero_optimization", {}).get("stage")
        except (OSError, ValueError):
            raise ValueError(f"{path} is not a readable DeepSpeed JSON") from None
    if stage is None:
        found = re.search(r"zero([123])", path.name)
        stage = int(found.group(1)) if found else None
    if stage not in (1, 2, 3):
        raise ValueError(f"{path}: no ZeRO stage 1-3 in its zero_optimization (ft runs ZeRO 1, 2 and 3)")
    return {"dist": f"zero{stage}", "dist.config_file": str(value)}


AXOLOTL_KEYS: dict[str, Any] = {"deepspeed": deepspeed}
