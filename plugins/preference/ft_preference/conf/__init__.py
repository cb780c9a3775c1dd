"""Hydra options of ft-preference: ``method/<name>.yaml`` and ``data/preference.yaml``."""
