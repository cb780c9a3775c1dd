"""ft-liger: Liger Kernel's model patches as ft's loss kernel (``kernels=liger``)."""
