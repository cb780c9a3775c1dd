"""ft-preference: preference fine-tuning (DPO, IPO, KTO, ORPO, SimPO) on TRL's trainers.

Light on purpose: nothing heavy is imported here, so ``ft validate`` stays fast and torch-free.
"""

__version__ = "0.1.0"
