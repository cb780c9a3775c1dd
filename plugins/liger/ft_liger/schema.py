"""The typed schema of ``kernels=liger`` (torch-free: ``ft validate`` imports it)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class LigerConfig:
    """``kernels=liger``: every key of ``ft_liger/conf/kernels/liger.yaml``."""

    name: str = "liger"
    fused_linear_cross_entropy: bool = True
    rms_norm: bool = True
    rope: bool = True
    swiglu: bool = True
