"""ft-lora: LoRA adapters for ft (``adapter=lora``) and ``ft merge``.

Kept light on purpose: the hook module (:mod:`ft_lora.plugin`) imports torch and PEFT only inside
the hooks that need them, so ``ft validate`` and ``ft --help`` stay fast.
"""

__version__ = "0.1.0"
