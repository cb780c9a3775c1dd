"""``dist=zero1|zero2|zero3`` options (typed; the launch keys come from ft's :class:`ft.api.DistConfig`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ft.api import DistConfig, bounded, path_field


@dataclass
class ZeroConfig(DistConfig):
    """DeepSpeed ZeRO settings; the stage is the option's number (``dist=zero2`` is stage 2)."""

    offload_optimizer: Literal["none", "cpu"] = "none"
    offload_param: Literal["none", "cpu"] = "none"
    overlap_comm: bool = False
    reduce_bucket_size: int | None = bounded(None, ge=1)
    config_file: str | None = path_field()
