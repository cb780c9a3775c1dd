"""Hydra options of ft-lora: ``adapter/lora.yaml`` (found through the ``ft.conf`` entry point)."""
