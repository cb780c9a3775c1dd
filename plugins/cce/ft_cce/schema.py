"""The typed schema of ``kernels=cce`` (torch-free: ``ft validate`` imports it)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ft.api import bounded


@dataclass
class CceConfig:
    """``kernels=cce``: every key of ``ft_cce/conf/kernels/cce.yaml``."""

    name: str = "cce"
    impl: Literal["auto", "cce", "torch_compile"] = "auto"
    filter_eps: str | None = "high"
    softcap: float | None = bounded(None, gt=0)
