"""First-party plugins selected together (each plugin's own tests run it alone)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from ft import hookimpl
from ft_testing import run_lifecycle, write_chat_rows


class Watch:
    @hookimpl
    def post_train(self, ctx: Any, metrics: dict[str, Any]) -> None:
        self.trainable = sorted(n for n, p in ctx.model.named_parameters() if p.requires_grad)
        self.step = ctx.trainer.state.global_step
        from ft_multipack.plugin import PackingState

        state = ctx.state(PackingState)
        self.packing = {**state.splits, "attention": state.attention}
        self.loss = metrics.get("train_loss")


@pytest.mark.parametrize("adapter", ["lora", "qlora"])
def test_packing_with_an_adapter_trains_only_the_adapter_on_packed_batches(tiny_model_dir, tmp_path, adapter):
    rows = write_chat_rows(tmp_path / "chat.jsonl", n=40)
    watch = Watch()
    run_lifecycle([f"model.name_or_path={tiny_model_dir}", "data=chat", f"data.path={rows}", "data.sequence_len=128",
                   f"+adapter={adapter}", "+packing=multipack", "trainer.micro_batch_size=2", "trainer.max_steps=2",
                   "trainer.logging_steps=1", "run.plot=false"], tmp_path / "run", watch)
    assert watch.step == 2 and math.isfinite(watch.loss)
    assert watch.packing["attention"] == "per_row"  # set on the base model under the PEFT wrapper
    assert watch.packing["train"]["rows_per_pack"] > 2  # 40 short chats really share sequences
    assert watch.trainable and all("lora_" in name for name in watch.trainable)
    assert json.loads((tmp_path / "run" / "run.json").read_text())["choices"]["packing"] == "multipack"
