"""``dist=fsdp`` options (typed; the launch keys come from ft's :class:`ft.api.DistConfig`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ft.api import DistConfig


@dataclass
class FsdpConfig(DistConfig):
    """FSDP2 settings, passed to transformers' ``fsdp_config``."""

    reshard_after_forward: bool = True
    cpu_offload: bool = False
    activation_checkpointing: bool = False
    wrap: list[str] | None = None
    checkpoint_format: Literal["sharded", "full"] = "sharded"
    cpu_ram_efficient_loading: bool = False
