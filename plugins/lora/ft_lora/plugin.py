"""ft-lora's hooks: ``adapter=lora`` wraps the model with a PEFT LoRA adapter; ``ft merge`` folds it in.

Lifecycle: ``validate_config`` checks the adapter keys (and, for a local model folder, that every
target module exists) before anything loads; ``adapt_model`` (the model's *adapt* phase) wraps
``ctx.model`` in a ``PeftModel`` so that only adapter weights train; ``post_save`` makes the saved adapter folder
loadable by plain PEFT (real base path) and records what ``ft merge`` needs.

Other plugins build on this one by declaring ``requires=("lora",)`` (ft-qlora does): they see the
same ``adapter.*`` keys and prepare the base model in the *prepare* phase, before this plugin wraps it.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from ft.api import ConfigError, PluginInfo, RunContext, hookimpl
from ft_lora.schema import LoraAdapterConfig, check_adapter_values, early_target_check
from ft_model.api import local_model_folder

FT_PLUGIN = PluginInfo(
    name="lora", contract="3.0",
    description="LoRA adapters on PEFT (adapter=lora): only adapter weights train; ft merge folds them in",
    capabilities=("inference_loader",),
)

log = logging.getLogger("ft")


@hookimpl
def config_schemas() -> dict[str, type]:
    return {"adapter/lora": LoraAdapterConfig}


@hookimpl
def validate_config(cfg: Any, choices: dict[str, str | None]) -> None:
    adapter = cfg.get("adapter")
    if adapter is None:
        return
    check_adapter_values(adapter)
    if getattr(adapter, "loraplus_lr_ratio", None) and choices.get("dist") not in (None, "ddp"):
        raise ConfigError(f"adapter.loraplus_lr_ratio with dist={choices['dist']}: LoRA+'s optimizer is built before the "
                          f"model is sharded; use it with dist=ddp (one or several processes)")
    model_dir = local_model_folder(cfg.model.name_or_path)  # the builtin model once converted, or a local folder
    if model_dir is not None:
        early_target_check(adapter, model_dir)


@hookimpl
def cli_commands() -> list[Any]:
    from ft_lora.merge import merge_command

    return [merge_command()]


@hookimpl
def load_for_inference(folder: Path, run_config: dict[str, Any], options: dict[str, Any]) -> Any:
    """A saved adapter on its base (quantised as it trained) for ``ft generate``, ``ft chat``, ``ft eval``."""
    from ft_lora.inference import load_adapter_for_inference

    return load_adapter_for_inference(folder, run_config, options)


@hookimpl
def adapt_model(ctx: RunContext) -> None:
    from ft_lora.adapter import wrap_model

    ctx.model = wrap_model(ctx.model, ctx.cfg.adapter, Path(ctx.run_dir),
                           gradient_checkpointing=ctx.cfg.trainer.gradient_checkpointing)


@hookimpl
def post_trainer_create(ctx: RunContext) -> None:
    """LoRA+ (``adapter.loraplus_lr_ratio``): the B matrices learn at ratio x the learning rate, through PEFT's
    LoRA+ parameter groups; the trainer keeps an optimizer set before training (transformers' Trainer)."""
    ratio = getattr(ctx.cfg.adapter, "loraplus_lr_ratio", None)
    if not ratio or ctx.trainer is None:
        return
    from peft.optimizers import create_loraplus_optimizer
    from transformers import Trainer

    args = ctx.trainer.args
    optimizer_cls, kwargs = Trainer.get_optimizer_cls_and_kwargs(args, ctx.trainer.model)
    kwargs.pop("lr", None)
    ctx.trainer.optimizer = create_loraplus_optimizer(
        ctx.trainer.model, optimizer_cls, lr=args.learning_rate, loraplus_lr_ratio=float(ratio),
        loraplus_lr_embedding=float(ctx.cfg.adapter.loraplus_lr_embedding), loraplus_weight_decay=args.weight_decay,
        **kwargs)


@hookimpl
def post_save(ctx: RunContext, output_dir: str) -> None:
    from ft_lora.adapter import finish_saved_adapter

    finish_saved_adapter(ctx, Path(output_dir))
    run_dir = ctx.run_dir
    ctx.report_lines.append(
        f"adapter (PEFT format): {output_dir}\n"
        f"  try it:  ft generate {run_dir} --prompt \"...\"   (or: ft chat {run_dir})\n"
        f"  merge:   ft merge {run_dir}   (a standalone model in {run_dir}/merged)"
    )


@hookimpl(optionalhook=True)
def axolotl_keys() -> dict[str, Any]:
    """Axolotl's keys for this plugin (ft-axolotl): ``ft_lora/axolotl.py``."""
    from ft_lora.axolotl import AXOLOTL_KEYS

    return AXOLOTL_KEYS
