"""ft-outputs: What a run leaves to read: metrics.jsonl, the pace line, loss.png, the model card, the sweep summary."""
