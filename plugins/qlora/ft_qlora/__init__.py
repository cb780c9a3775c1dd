"""ft-qlora: QLoRA for ft (``adapter=qlora``): the base loads in 4-bit (or 8-bit), LoRA trains on top.

Kept light: :mod:`ft_qlora.plugin` imports torch, transformers and PEFT only inside its hooks.
"""

__version__ = "0.1.0"
