"""The typed schema of ``kernels=ft`` (torch-free: ``ft validate`` imports it)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ft.api import bounded


@dataclass
class FusedCrossEntropyConfig:
    """``kernels=ft``: every key of ``ft_kernels/conf/kernels/ft.yaml``."""

    name: str = "ft"
    backend: Literal["auto", "torch", "triton"] = "auto"
    chunk_size: int = bounded(1024, ge=1)
    recompute: bool = False
    softcap: float | None = bounded(None, gt=0)
    z_loss: float = bounded(0.0, ge=0)
    label_smoothing: float = bounded(0.0, ge=0, lt=1)
