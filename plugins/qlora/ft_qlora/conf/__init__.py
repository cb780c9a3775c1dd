"""Hydra options of ft-qlora: ``adapter/qlora.yaml`` (found through the ``ft.conf`` entry point)."""
