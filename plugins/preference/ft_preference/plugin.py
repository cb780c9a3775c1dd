"""Hook implementations of ft-preference: ``method=dpo|ipo|kto|orpo|simpo`` on TRL's trainers.

Selecting a method also selects ``data=preference`` (the method options' defaults list does it), so
``ft run +method=dpo data.path=pairs.jsonl`` needs nothing else (a method trains only on preference
rows, so its option requires the data option through Hydra's defaults list). The methods declare their
traits (they compute their own logits; DPO, IPO and KTO need a reference), so ``packing=multipack`` and
loss kernels refuse them at ``ft validate``. torch, trl and peft are imported only inside hooks that run
during training: ``ft validate`` stays fast and torch-free.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ft.api import ConfigError, PluginInfo, RunContext, hookimpl

_WITH_REFERENCE = ("computes_own_logits", "needs_reference")
FT_PLUGIN = PluginInfo(
    name="preference", contract="3.0",
    description="Preference fine-tuning on TRL: method=dpo, ipo, kto, orpo, simpo (with data=preference)",
    capabilities=("trainer", "dataset"),
    traits={"method/dpo": _WITH_REFERENCE, "method/ipo": _WITH_REFERENCE, "method/kto": _WITH_REFERENCE,
            "method/orpo": ("computes_own_logits",), "method/simpo": ("computes_own_logits",)},
)


def _selected(choices: dict[str, str | None]) -> str | None:
    from ft_preference.trainers import METHODS

    method = choices.get("method")
    return method if method in METHODS else None


@dataclass
class PreferenceState:
    """The held-out metrics measured before training (step 0)."""

    before: dict[str, Any] | None = None


@hookimpl
def config_schemas() -> dict[str, type]:
    from ft_preference.schema import SCHEMAS

    return dict(SCHEMAS)


@hookimpl
def validate_config(cfg: Any, choices: dict[str, str | None]) -> None:
    method = _selected(choices)
    if method is None:
        if choices.get("data") == "preference":
            raise ConfigError(
                f"data=preference needs a preference method (method=dpo, ipo, kto, orpo or simpo), "
                f"not method={choices.get('method')}"
            )
        return
    section = cfg.method  # ranges (beta > 0, lengths >= 1, label_smoothing in [0, 0.5)) are the schema's
    if section.max_prompt_length and section.max_length and section.max_prompt_length >= section.max_length:
        raise ConfigError(
            f"method.max_prompt_length={section.max_prompt_length} must be below method.max_length="
            f"{section.max_length}, or no completion token fits"
        )
    if method == "dpo" and section.loss_type == "exo_pair" and section.label_smoothing == 0.0:
        raise ConfigError("method.loss_type=exo_pair needs method.label_smoothing > 0 (the EXO paper uses 1e-3)")
    if method == "kto" and cfg.trainer.micro_batch_size < 2:
        raise ConfigError(
            f"trainer.micro_batch_size={cfg.trainer.micro_batch_size}: method=kto needs at least 2 rows a batch "
            f"(its KL estimate pairs each completion with another row's prompt)"
        )


@hookimpl
def cli_commands() -> list[Any]:
    from ft.api import Command
    from ft_preference import cli

    return [Command("prefs", "convert or check preference data (HH-RLHF, GSM8K solutions, KTO rows)",
                    cli.run, cli.add_arguments)]


@hookimpl
def prepare_dataset(ctx: RunContext) -> Any:
    from ft_preference.data import prepare
    from ft_preference.trainers import spec_for

    return prepare(ctx, spec_for(ctx).kind)


#: The embedded default's learning rates (pairs of the default task, one epoch of 32 steps): with an
#: adapter, LoRA's usual range; a full fine-tune moves every weight and needs far less.
EMBEDDED_LR = {"adapter": 3e-4, "full": 1e-5}


@hookimpl
def config_defaults(choices: dict[str, str | None], config: dict[str, Any]) -> dict[str, Any] | None:
    """On the embedded default pairs (no data.path, no data.datasets), the learning rate that suits an
    adapter or a full fine-tune."""
    data = config.get("data") or {}
    if f"method/{choices.get('method')}" not in FT_PLUGIN.traits or data.get("path") or data.get("datasets"):
        return None
    return {"optim.lr": EMBEDDED_LR["adapter" if choices.get("adapter") else "full"]}


@hookimpl
def training_args(ctx: RunContext) -> dict[str, Any]:
    from ft_preference.trainers import method_arguments

    return method_arguments(ctx)


@hookimpl
def training_args_class(ctx: RunContext) -> type:
    from ft_preference.trainers import config_class

    return config_class(ctx)


@hookimpl
def create_trainer(ctx: RunContext) -> Any:
    from ft_preference.trainers import build_trainer

    return build_trainer(ctx)


@hookimpl
def post_trainer_create(ctx: RunContext) -> None:
    from ft_preference.report import evaluate_before

    state = ctx.state(PreferenceState)
    if ctx.datasets.eval is not None and ctx.cfg.method.eval_before:
        state.before = evaluate_before(ctx.trainer)


@hookimpl
def post_train(ctx: RunContext, metrics: dict[str, Any]) -> None:
    from ft.api import read_metrics
    from ft_preference.report import plot_rewards, summarise

    state = ctx.state(PreferenceState)
    lines = summarise(metrics, state.before, ctx.trainer.state.log_history)
    plotted = ctx.is_main and ctx.cfg.run.plot and plot_rewards(read_metrics(ctx.metrics_path), ctx.run_dir / "rewards.png",
                                                title=f"{ctx.run_dir.name} ({ctx.choices['method']})")
    if lines or plotted:
        header = f"preference ({ctx.choices['method']})"
        if ctx.datasets.eval is not None:
            header += f", held-out split of {len(ctx.datasets.eval)} rows"
        ctx.report_lines.append(header + ":")
        ctx.report_lines.extend(lines)
        if plotted:
            ctx.report_lines.append(f"  reward curves: {ctx.run_dir / 'rewards.png'}")


@hookimpl(optionalhook=True)
def axolotl_keys() -> dict[str, Any]:
    """Axolotl's keys for this plugin (ft-axolotl): ``ft_preference/axolotl.py``."""
    from ft_preference.axolotl import AXOLOTL_KEYS

    return AXOLOTL_KEYS
