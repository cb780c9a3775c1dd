"""ft-cce: Apple's Cut Cross Entropy as ft's loss kernel (``kernels=cce``)."""
