"""The typed schema of ``packing=multipack`` (torch-free: ``ft validate`` uses it)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from ft.api import ConfigError, bounded


@dataclass
class MultipackConfig:
    """``packing=multipack``: every key of ``ft_multipack/conf/packing/multipack.yaml``."""

    attention: Literal["auto", "per_row", "position_ids", "block_mask"] = "auto"
    group_size: int = bounded(1_000, ge=1, expected="at least 1 row")
    eval: bool = True
    pad_to_multiple_of: int = bounded(8, ge=1, expected="1 or more")


def check_packing_values(cfg: Any, choices: dict[str, str | None]) -> None:
    """Cross-field rules a schema cannot say (ranges are the schema's; the method must be ``packable``,
    which ``FT_PLUGIN.requires_traits`` has the kernel check)."""
    packing = cfg.packing
    attention = packing.attention
    implementation = cfg.model.attn_implementation
    if attention == "per_row" and implementation not in (None, "sdpa"):
        raise ConfigError(f"packing.attention=per_row runs sdpa row by row and needs model.attn_implementation=sdpa, "
                          f"not {implementation}; use packing.attention=auto")
    if attention == "block_mask" and implementation not in (None, "sdpa", "eager"):
        raise ConfigError(f"packing.attention=block_mask needs model.attn_implementation=sdpa or eager, "
                          f"not {implementation}; use packing.attention=position_ids")
