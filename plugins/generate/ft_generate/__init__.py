"""ft-generate: ft generate, ft chat and ft eval: generation and held-out scores with a run's model."""
