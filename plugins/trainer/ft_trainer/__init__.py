"""ft-trainer: ``transformers.Trainer`` (and TRL's trainers) under ft's per-batch hooks."""
