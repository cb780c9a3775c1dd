"""TRL's GRPOTrainer built from ft's config, with ft's loss chain and a completions log.

The trainer is ``ft_trainer.api.ft_trainer_class(GRPOTrainer)`` (ft's ``loss`` chain and ``process_batch``
work on it); its arguments class is TRL's ``GRPOConfig``, built by the kernel from the ``trainer``
and ``optim`` groups plus this module's fields. TRL defaults that do not fit a CPU (bf16, gradient
checkpointing) are replaced by ft's ``trainer.precision`` and ``trainer.gradient_checkpointing``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from typing import Any

from ft.api import RunContext
from ft_grpo.state import GrpoState

log = logging.getLogger("ft")


def grpo_arguments(ctx: RunContext) -> dict[str, Any]:
    """GRPOConfig fields from ``method`` (and ft's choices where TRL's defaults differ)."""
    from trl import GRPOConfig

    method = ctx.cfg.method
    fields = {f.name for f in dataclasses.fields(GRPOConfig)}
    kwargs: dict[str, Any] = {
        "num_generations": method.num_generations,
        "max_completion_length": method.max_completion_length,
        "beta": method.beta,
        "loss_type": method.loss_type,
        "importance_sampling_level": method.importance_sampling_level,
        "scale_rewards": method.scale_rewards,
        "epsilon": method.epsilon,
        "epsilon_high": method.epsilon_high if method.epsilon_high is not None else method.epsilon,
        "num_iterations": method.num_iterations,
        "mask_truncated_completions": method.mask_truncated_completions,
        "temperature": method.temperature,
        "top_p": method.top_p,
        "top_k": method.top_k,
        "repetition_penalty": method.repetition_penalty,
        "reward_weights": [float(r.weight) for r in reward_entries(ctx)],
        "use_vllm": method.use_vllm,
        "vllm_mode": method.vllm_mode,
        "log_completions": False,  # ft writes completions.jsonl itself; TRL's print needs rich, its tables a tracker
        "shuffle_dataset": bool(ctx.cfg.data.shuffle),
    }
    checkpointing = ctx.cfg.trainer.gradient_checkpointing
    if "activation_checkpointing" in fields:  # transformers >= 5.23 reads the new name
        kwargs["activation_checkpointing"] = checkpointing
    kwargs["gradient_checkpointing"] = checkpointing
    return {k: v for k, v in kwargs.items() if k in fields}


@dataclasses.dataclass
class _Entry:
    name: str
    weight: float = 1.0
    args: dict[str, Any] = dataclasses.field(default_factory=dict)


def reward_entries(ctx: RunContext) -> list[Any]:
    """The configured rewards, or the data format's default (sort_partial, numeric_match)."""
    from ft_grpo.data import DEFAULT_REWARDS

    if ctx.cfg.method.rewards:
        return list(ctx.cfg.method.rewards)
    fmt = ctx.state(GrpoState).format or ("default_task" if not ctx.cfg.data.path else ctx.cfg.data.format)
    return [_Entry(DEFAULT_REWARDS[fmt])] if fmt in DEFAULT_REWARDS else []


def available_rewards(ctx: RunContext) -> dict[str, Any]:
    """Every installed plugin's named rewards (``reward_functions`` hook)."""
    from ft.api import merge_contributions

    pm = ctx.installed_pm or ctx.pm
    return merge_contributions(pm.hook.reward_functions(), "reward_functions", same=lambda a, b: a is b)


def reward_funcs(ctx: RunContext) -> list[Any]:
    """The configured rewards as TRL reward functions."""
    from ft_grpo.rewards import resolve

    available = available_rewards(ctx)
    return [resolve(entry, available) for entry in reward_entries(ctx)]


def trainer_class() -> type:
    """``ft_trainer_class(GRPOTrainer)`` that also writes a sample of completions every N steps."""
    from ft_trainer.api import ft_trainer_class
    from trl import GRPOTrainer

    base = ft_trainer_class(GRPOTrainer)

    class FtGRPOTrainer(base):  # type: ignore[misc, valid-type]
        def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
            every = self.ft_ctx.cfg.method.log_completions_every
            step = self.state.global_step
            if every and self.model.training and step and step % every == 0 and self.ft_ctx.is_main:
                self._write_completions(step)
            super().log(logs, start_time)

        def _write_completions(self, step: int, limit: int = 8) -> None:
            prompts, completions = list(self._logs["prompt"])[-limit:], list(self._logs["completion"])[-limit:]
            rewards = {name: list(values)[-limit:] for name, values in self._logs["rewards"].items()}
            advantages = list(self._logs["advantages"])[-limit:]
            path = self.ft_ctx.run_dir / "completions.jsonl"
            with path.open("a", encoding="utf-8") as handle:
                for i, (prompt, completion) in enumerate(zip(prompts, completions)):
                    record = {"step": step, "prompt": prompt, "completion": completion,
                              "rewards": {name: values[i] for name, values in rewards.items() if i < len(values)},
                              "advantage": advantages[i] if i < len(advantages) else None}
                    handle.write(json.dumps(record, default=str) + "\n")

    return FtGRPOTrainer


def build_trainer(ctx: RunContext) -> Any:
    """The ft-aware GRPOTrainer for this run."""
    import warnings

    # TRL asks transformers the deprecated is_gradient_checkpointing (renamed for v6): not the user's concern.
    warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
    dtypes = {name: p.dtype for name, p in ctx.model.named_parameters() if p.requires_grad}
    trainer = trainer_class()(
        model=ctx.model, reward_funcs=reward_funcs(ctx), args=ctx.args, train_dataset=ctx.datasets.train,
        eval_dataset=None, processing_class=ctx.tokenizer, callbacks=ctx.callbacks, ft_ctx=ctx)
    for name, param in ctx.model.named_parameters():  # TRL may cast a quantised model's adapter to bf16
        if name in dtypes and param.dtype != dtypes[name]:
            param.data = param.data.to(dtypes[name])
    if ctx.cfg.method.beta > 0:
        log.info("reference: %s", "the base model with the adapter disabled" if trainer.ref_model is None
                 else "a frozen copy of the starting model")
    return trainer
