"""Hook implementations of ft-grpo: ``method=grpo`` on TRL's GRPOTrainer, rewards as an ecosystem.

Selecting ``method=grpo`` also selects ``data=prompts``. Rewards come from every installed plugin's
``reward_functions`` hook (ft-grpo's own library among them) or from an import path; unknown names fail
at ``ft validate`` with the list of available ones. torch and trl are imported only in hooks that run
during training, so ``ft validate`` stays fast and torch-free.
"""

from __future__ import annotations

import importlib.util
import logging
from typing import Any

from ft.api import ConfigError, PluginInfo, RunContext, gathered_weights, hookimpl, planned_world_size
from ft_grpo import hookspecs as grpo_hookspecs
from ft_grpo.state import GrpoState

FT_PLUGIN = PluginInfo(
    name="grpo", contract="3.0",
    description="Group Relative Policy Optimization on TRL (method=grpo, data=prompts): online RL with rewards",
    capabilities=("trainer", "dataset"),
    traits={"method/grpo": ("computes_own_logits", "generates")},
    hookspecs=grpo_hookspecs,
)
log = logging.getLogger("ft")

#: The learning rate when an adapter trains instead of every weight (method/grpo.yaml's 1e-5 is a full fine-tune's).
ADAPTER_LR = 2e-4


@hookimpl
def config_schemas() -> dict[str, type]:
    from ft_grpo.schema import SCHEMAS

    return dict(SCHEMAS)


@hookimpl
def reward_functions() -> dict[str, Any]:
    from ft_grpo.rewards import LIBRARY

    return dict(LIBRARY)


def check_batch(generations: int, world_size: int, micro_batch: int, accumulation: int) -> None:
    """TRL samples ``num_generations`` completions per prompt from one generation batch of
    processes x micro batch x accumulation completions: it must hold whole groups."""
    batch = world_size * micro_batch * accumulation
    if batch % generations:
        raise ConfigError(
            f"method.num_generations={generations} must divide processes x trainer.micro_batch_size x "
            f"trainer.gradient_accumulation_steps = {world_size} x {micro_batch} x {accumulation} = {batch}: set "
            f"trainer.micro_batch_size to a multiple of {generations} (or num_generations to a divisor of {batch})")


@hookimpl
def validate_config(cfg: Any, choices: dict[str, str | None]) -> None:
    from ft_grpo.rewards import import_reward

    if choices.get("method") != "grpo":
        if choices.get("data") == "prompts":
            raise ConfigError(f"data=prompts needs method=grpo, not method={choices.get('method')}")
        return
    method = cfg.method
    check_batch(method.num_generations, planned_world_size(cfg), cfg.trainer.micro_batch_size,
                cfg.trainer.gradient_accumulation_steps)
    for entry in method.rewards:
        if ":" in entry.name:
            try:
                import_reward(entry.name)
            except Exception as exc:  # noqa: BLE001 - any import problem is the user's to fix, in one line
                raise ConfigError(f"method.rewards: cannot import '{entry.name}' ({type(exc).__name__}: {exc}); "
                                  "a reward path is module:function, importable from the working directory") from None
    if not method.rewards and cfg.data.path and cfg.data.format in ("plain", "chat"):
        raise ConfigError(f"data.format={cfg.data.format} has no default reward: name one with "
                          "method.rewards=[{name: exact_match}] (or your own module:function)")
    if method.use_vllm and importlib.util.find_spec("vllm") is None:
        raise ConfigError("method.use_vllm=true needs vLLM, which is not installed (pip install vllm, on a machine with "
                          "a GPU); or drop use_vllm to generate with transformers")
    if method.epsilon_high is not None and method.epsilon_high < method.epsilon:
        raise ConfigError(f"method.epsilon_high={method.epsilon_high} is below method.epsilon={method.epsilon}")


@hookimpl
def prepare_dataset(ctx: RunContext) -> Any:
    from ft_grpo.data import DEFAULT_REWARDS, prepare

    bundle = prepare(ctx)
    fmt = ctx.state(GrpoState).format
    if not ctx.cfg.method.rewards and fmt not in DEFAULT_REWARDS:
        raise ConfigError(f"the prompts are in {fmt} form, which has no default reward: name one with "
                          "method.rewards=[{name: exact_match}] (or your own module:function)")
    return bundle


@hookimpl
def config_defaults(choices: dict[str, str | None], config: dict[str, Any]) -> dict[str, Any] | None:
    """With an adapter, GRPO's learning rate is an adapter's (method/grpo.yaml's is a full fine-tune's)."""
    return {"optim.lr": ADAPTER_LR} if choices.get("method") == "grpo" and choices.get("adapter") else None


@hookimpl
def training_args(ctx: RunContext) -> dict[str, Any]:
    from ft_grpo.trainer import grpo_arguments

    kwargs = grpo_arguments(ctx)
    check_batch(ctx.cfg.method.num_generations, max(ctx.world_size, 1), ctx.cfg.trainer.micro_batch_size,
                ctx.cfg.trainer.gradient_accumulation_steps)
    return kwargs


@hookimpl
def training_args_class(ctx: RunContext) -> type:
    from trl import GRPOConfig

    return GRPOConfig


@hookimpl
def pre_model_load(ctx: RunContext) -> dict[str, Any]:
    if ctx.cfg.method.use_vllm:
        import torch

        if not torch.cuda.is_available():
            raise ConfigError("method.use_vllm=true needs a GPU (vLLM generates on CUDA); none is visible here: "
                              "drop use_vllm to generate with transformers")
    return {}


@hookimpl
def create_trainer(ctx: RunContext) -> Any:
    from ft_grpo.trainer import build_trainer

    return build_trainer(ctx)


def _score(ctx: RunContext, label: str) -> Any:
    from ft_grpo.report import score_held_out
    from ft_grpo.trainer import reward_entries, reward_funcs

    state = ctx.state(GrpoState)
    rows = state.held_out
    if not rows:
        return None
    log.info("scoring %d held-out prompts %s training...", len(rows), label)
    with gathered_weights(ctx):  # every rank scores, together (ZeRO-3 gathers the partitioned weights)
        return score_held_out(ctx.model, ctx.tokenizer, rows, reward_funcs(ctx),
                              [float(e.weight) for e in reward_entries(ctx)], ctx.cfg.method.max_completion_length,
                              state.format, progress=f"held-out {label}" if ctx.is_main else None)


@hookimpl
def post_trainer_create(ctx: RunContext) -> None:
    if ctx.cfg.method.eval_before:
        ctx.state(GrpoState).before = _score(ctx, "before")


@hookimpl
def post_train(ctx: RunContext, metrics: dict[str, Any]) -> None:
    from ft.api import read_metrics
    from ft_grpo.report import plot_rewards, report_lines

    state = ctx.state(GrpoState)
    after = _score(ctx, "after")
    before = state.before
    if after is None:
        return
    metrics["heldout_reward_after"] = after.total
    if before is not None:
        metrics["heldout_reward_before"] = before.total
    if after.exact_match is not None:
        metrics["heldout_exact_match_after"] = after.exact_match
        if before is not None:
            metrics["heldout_exact_match_before"] = before.exact_match
    ctx.report_lines.extend(report_lines(before, after))
    if ctx.is_main and ctx.cfg.run.plot and plot_rewards(read_metrics(ctx.metrics_path), ctx.run_dir / "rewards.png",
                                                         title=f"{ctx.run_dir.name} (grpo)"):
        ctx.report_lines.append(f"  reward curves: {ctx.run_dir / 'rewards.png'}")


@hookimpl(optionalhook=True)
def axolotl_keys() -> dict[str, Any]:
    """Axolotl's keys for this plugin (ft-axolotl): ``ft_grpo/axolotl.py``."""
    from ft_grpo.axolotl import AXOLOTL_KEYS

    return AXOLOTL_KEYS
