"""Builtin plugin: supervised fine-tuning (``method=sft``) on ``transformers.Trainer``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ft.api import PluginInfo, RunContext, hookimpl

FT_PLUGIN = PluginInfo(
    name="sft", contract="3.0",
    description="Supervised fine-tuning: next-token loss on trained tokens (method=sft)",
    traits={"method/sft": ("packable", "token_loss")},
)


@dataclass
class SftMethodConfig:
    """``method=sft``: the model's own next-token loss on the trained tokens; nothing to set."""

    name: str = "sft"


@hookimpl
def config_schemas() -> dict[str, type]:
    return {"method/sft": SftMethodConfig}


@hookimpl(trylast=True)
def create_trainer(ctx: RunContext) -> Any:
    from ft_trainer.api import ft_trainer_class
    from transformers import Trainer

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
