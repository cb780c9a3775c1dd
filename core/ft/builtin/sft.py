"""Builtin plugin: supervised fine-tuning (``method=sft``) on ``transformers.Trainer``."""

from __future__ import annotations

from typing import Any

from ft import hookimpl
from ft.context import RunContext
from ft.plugins import PluginInfo

FT_PLUGIN = PluginInfo(
    name="sft",
    description="Supervised fine-tuning: next-token loss on trained tokens (method=sft)",
    traits={"method/sft": ("packable", "token_loss")},
)
BUILTIN_OPTIONS = ("method/sft",)


@hookimpl(trylast=True)
def create_trainer(ctx: RunContext) -> Any:
    from transformers import Trainer

    from ft.training import ft_trainer_class

    return ft_trainer_class(Trainer)(
        model=ctx.model,
        args=ctx.args,
        train_dataset=ctx.datasets.train,
        eval_dataset=ctx.datasets.eval,
        data_collator=ctx.data_collator,
        processing_class=ctx.tokenizer,
        callbacks=ctx.callbacks,
        ft_ctx=ctx,
    )
