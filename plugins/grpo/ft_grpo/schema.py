"""Typed schemas of ft-grpo's options (``method/grpo``, ``data/prompts``); torch-free (``ft validate`` imports it).

Defaults are ft's, chosen to run on a CPU (TRL 1.16's GRPOConfig defaults to bf16, gradient checkpointing
and a learning rate of 1e-6); see docs/grpo.md for what each option does.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from ft.api import bounded, named, path_field


@dataclass
class RewardEntry:
    """One reward of ``method.rewards``: a name (any installed plugin's, or ``module:function``), its weight
    in the total reward, and keyword arguments passed to it."""

    name: str = named("sort_partial", registry="reward_functions")
    weight: float = 1.0
    args: dict[str, Any] = field(default_factory=dict)


@dataclass
class GrpoConfig:
    """``method=grpo``: Group Relative Policy Optimization on TRL's GRPOTrainer."""

    name: str = "grpo"
    num_generations: int = bounded(4, ge=2)
    max_prompt_length: int | None = bounded(256, ge=1)
    max_completion_length: int = bounded(32, ge=1)
    beta: float = bounded(0.0, ge=0)
    loss_type: Literal["grpo", "bnpo", "dr_grpo", "dapo"] = "dapo"
    importance_sampling_level: Literal["token", "sequence"] = "token"
    scale_rewards: Literal["group", "batch", "none"] = "group"
    epsilon: float = bounded(0.2, gt=0, lt=1)
    epsilon_high: float | None = bounded(None, gt=0)
    num_iterations: int = bounded(1, ge=1)
    mask_truncated_completions: bool = False
    temperature: float = bounded(1.0, gt=0)
    top_p: float = bounded(1.0, gt=0, le=1)
    top_k: int = bounded(0, ge=0)
    repetition_penalty: float = bounded(1.0, gt=0)
    rewards: list[RewardEntry] = field(default_factory=list)
    log_completions_every: int = bounded(10, ge=0)
    eval_before: bool = True
    use_vllm: bool = False
    vllm_mode: Literal["colocate", "server"] = "colocate"


@dataclass
class PromptTaskConfig:
    """``data.task``: the embedded default's prompts (ft's sorting task), used when ``data.path`` is unset."""

    train_rows: int = bounded(256, ge=1)
    eval_rows: int = bounded(32, ge=0)
    seed: int = 1234


@dataclass
class PromptsDataConfig:
    """``data=prompts``: prompts to generate from, with the columns the rewards read (selected by method=grpo)."""

    path: str | None = path_field()
    format: Literal["auto", "plain", "chat", "gsm8k", "default_task"] = "auto"
    prompt_field: str = "prompt"
    system_prompt: str | None = None
    instruction: str | None = None
    val_path: str | None = path_field()
    val_size: float = bounded(32, ge=0)
    max_rows: int | None = bounded(None, ge=1)
    max_eval_rows: int | None = bounded(None, ge=1)
    shuffle: bool = True
    seed: int | None = None
    task: PromptTaskConfig = field(default_factory=PromptTaskConfig)


SCHEMAS: dict[str, type] = {"method/grpo": GrpoConfig, "data/prompts": PromptsDataConfig}
