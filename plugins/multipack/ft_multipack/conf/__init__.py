"""Hydra options of ft-multipack: ``packing/multipack.yaml`` (found through the ``ft.conf`` entry point)."""
