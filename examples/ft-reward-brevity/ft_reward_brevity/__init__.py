"""ft-reward-brevity: reward functions for method=grpo, shipped as a plugin."""
