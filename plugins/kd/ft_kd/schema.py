"""The typed schema of ``method=kd`` (torch-free: ``ft validate`` imports it)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ft.api import bounded, path_field


@dataclass
class KdConfig:
    """``method=kd``: every key of ``ft_kd/conf/method/kd.yaml``."""

    name: str = "kd"
    teacher: str | None = "self"
    logprobs: str | None = path_field()
    student_layers: int = bounded(8, ge=1)
    top_k: int = bounded(32, ge=1)
    loss: Literal["forward_kl", "reverse_kl", "jsd"] = "forward_kl"
    beta: float = bounded(0.5, ge=0, le=1)
    temperature: float = bounded(1.0, gt=0)
    kd_alpha: float = bounded(1.0, ge=0)
    ce_alpha: float = bounded(1.0, ge=0)
    renormalize: bool = True
    chunk_size: int = bounded(1024, ge=1)
    teacher_bits: Literal[4, 8] | None = None
    eval_kl: bool = True
