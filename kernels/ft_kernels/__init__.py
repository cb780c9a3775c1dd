"""ft-kernels: ft's own GPU/CPU kernels. ``linear_cross_entropy`` is the fused linear cross entropy."""

from ft_kernels.linear_ce import linear_cross_entropy

__all__ = ["linear_cross_entropy"]
