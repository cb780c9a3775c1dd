"""Typed schema of ``method=diffusion`` (torch-free: ``ft validate`` imports it)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from ft.api import bounded


@dataclass
class SamplingConfig:
    """How a diffusion model generates (``ft generate``, ``ft chat``, the default task's scoring, samples)."""

    steps: int = bounded(8, ge=1)
    block_length: int = bounded(32, ge=1)
    temperature: float = bounded(0.0, ge=0)
    remasking: Literal["low_confidence", "random"] = "low_confidence"


@dataclass
class DiffusionConfig:
    """``method=diffusion``: masked diffusion language modelling (LLaDA-style)."""

    name: str = "diffusion"
    eps: float = bounded(1e-3, ge=0, lt=1)
    noise_schedule: Literal["linear", "cosine"] = "linear"
    min_mask_ratio: float = bounded(0.0, ge=0, le=1)
    max_mask_ratio: float = bounded(1.0, gt=0, le=1)
    importance_weighting: bool = True
    loss_normalization: Literal["noisable_tokens", "answer_length"] = "noisable_tokens"
    eos_fill: bool = True
    mask_token: str = "<|mdm_mask|>"
    shift_logits: bool = True
    attention: Literal["bidirectional", "causal"] = "bidirectional"
    eval_mask_ratio: float = bounded(0.5, gt=0, le=1)
    sample_every: int = bounded(20, ge=0)
    sample_prompts: int = bounded(3, ge=1)
    generation: SamplingConfig = field(default_factory=SamplingConfig)


SCHEMAS: dict[str, type] = {"method/diffusion": DiffusionConfig}
