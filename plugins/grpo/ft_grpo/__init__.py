"""ft-grpo: Group Relative Policy Optimization on TRL's GRPOTrainer (method=grpo)."""
