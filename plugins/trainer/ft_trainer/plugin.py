"""ft-trainer: the training steps of a run when no plugin takes them over (each ``trylast``).

``training_args_class`` (``transformers.TrainingArguments``), ``loss`` (the method's own, innermost in the
chain), ``run_training`` (``trainer.train``, resuming from ``run.resume_from``) and ``save_model``
(written into a temporary folder and renamed into place, so a crash never leaves a half-written model).
A builtin plugin: it claims no capability, so a plugin implementing one of these hooks plainly takes over.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from ft.api import CONTRACT_VERSION, LossCall, LossResult, PluginInfo, RunContext, hookimpl, resolve_resume_from

FT_PLUGIN = PluginInfo(name="trainer", description="transformers' Trainer under ft's hooks: arguments, loss, loop, save",
                       always_active=True, contract=CONTRACT_VERSION)


@hookimpl(trylast=True)
def training_args_class(ctx: RunContext) -> type:
    from transformers import TrainingArguments

    return TrainingArguments


@hookimpl(trylast=True)
def loss(ctx: RunContext, call: LossCall) -> LossResult:
    """The method's own loss, innermost in the chain that loss kernels replace and wrappers extend."""
    return call.method_loss()


@hookimpl(trylast=True)
def run_training(ctx: RunContext) -> Any:
    resume = ctx.cfg.run.resume_from
    checkpoint = str(resolve_resume_from(resume, ctx.cfg.run.root)) if resume else None
    return ctx.trainer.train(resume_from_checkpoint=checkpoint)


@hookimpl(trylast=True)
def save_model(ctx: RunContext, output_dir: str) -> bool:
    """Save into a temporary folder first so a crash never leaves a half-written model.

    Every rank calls ``trainer.save_model`` (gathering sharded weights is collective); it writes on
    rank 0 only, which then adds the tokenizer and renames the folder into place.
    """
    final = Path(output_dir)
    partial = final.with_name(final.name + ".partial")
    if ctx.is_main:
        shutil.rmtree(partial, ignore_errors=True)
    ctx.trainer.save_model(str(partial))
    if ctx.is_main:
        if ctx.tokenizer is not None:
            ctx.tokenizer.save_pretrained(str(partial))
        (partial / "training_args.bin").unlink(missing_ok=True)
        partial.rename(final)
    return True


@hookimpl(optionalhook=True)
def axolotl_keys() -> dict[str, Any]:
    """Axolotl's training-loop keys (ft-axolotl): ``ft_trainer/axolotl.py``."""
    from ft_trainer.axolotl import AXOLOTL_KEYS

    return AXOLOTL_KEYS
