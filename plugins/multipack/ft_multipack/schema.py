"""The typed schema of ``packing=multipack`` (torch-free: ``ft validate`` uses it)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from ft.errors import ConfigError


@dataclass
class MultipackConfig:
    """``packing=multipack``: every key of ``ft_multipack/conf/packing/multipack.yaml``."""

    attention: Literal["auto", "per_row", "position_ids", "block_mask"] = "auto"
    group_size: int = 1_000
    eval: bool = True
    pad_to_multiple_of: int = 8


def check_packing_values(cfg: Any, choices: dict[str, str | None]) -> None:
    """Cross-field rules a schema cannot say."""
    packing = cfg.packing
    if int(packing.group_size) < 1:
        raise ConfigError(f"packing.group_size={packing.group_size} is not valid: expected at least 1 row")
    if int(packing.pad_to_multiple_of) < 1:
        raise ConfigError(f"packing.pad_to_multiple_of={packing.pad_to_multiple_of} is not valid: expected 1 or more")
    method = choices.get("method") or "sft"
    if method != "sft":
        raise ConfigError(f"packing=multipack packs supervised rows (method=sft), but method={method} builds "
                          "its own batches; remove +packing=multipack")
    attention = str(packing.attention)
    implementation = cfg.model.get("attn_implementation") if "model" in cfg else None
    if attention == "per_row" and implementation not in (None, "sdpa"):
        raise ConfigError(f"packing.attention=per_row runs sdpa row by row and needs model.attn_implementation=sdpa, "
                          f"not {implementation}; use packing.attention=auto")
    if attention == "block_mask" and implementation not in (None, "sdpa", "eager"):
        raise ConfigError(f"packing.attention=block_mask needs model.attn_implementation=sdpa or eager, "
                          f"not {implementation}; use packing.attention=position_ids")
