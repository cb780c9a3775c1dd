"""ft-model: Loads the tokenizer, the model and frozen reference models (hub id, local folder, the builtin SmolLM2), offline-first."""
