"""ft-kernels: ft's own GPU/CPU kernels. ``linear_cross_entropy`` is the fused linear cross entropy.

Imported lazily: ft loads this package's plugin module for ``ft validate``, which must not import torch.
"""

from __future__ import annotations

from typing import Any

__all__ = ["linear_cross_entropy"]


def __getattr__(name: str) -> Any:
    if name == "linear_cross_entropy":
        from ft_kernels.linear_ce import linear_cross_entropy

        return linear_cross_entropy
    raise AttributeError(f"module 'ft_kernels' has no attribute {name!r}")
