"""What method plugins import from ft-trainer: the hook-aware trainer class (a test keeps this the only
module other plugins import from it)."""

from ft_trainer.trainer import ft_trainer_class

__all__ = ["ft_trainer_class"]
