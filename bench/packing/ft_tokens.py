"""An ft plugin for ``bench/packing``: counts the trained tokens of every batch a run trains on.

Throughput on variable-length rows is trained tokens per second, not steps per second: a padded
step and a packed step hold different numbers of tokens. The plugin wraps the trainer's collator
after the trainer is built (so it sees exactly the batches training sees, padded or packed) and
writes, when training ends, one JSON file named by ``FT_BENCH_TOKENS``:
``{"trained": [...], "slots": [...]}``, per batch in the order the collator built them, where
``trained`` counts labels the loss uses (``labels[:, 1:] != -100``) and ``slots`` the
``input_ids`` positions (real and padding) the model computed.

Loaded by :mod:`bench.packing.ft_launch` next to the harness's step timer; it changes no batch.
"""

from __future__ import annotations

import json
import os
from typing import Any

from transformers import TrainerCallback

from ft import hookimpl
from ft.plugins import PluginInfo

FT_PLUGIN = PluginInfo(name="bench_trained_tokens", description="Benchmark trained-token counter (bench/packing)",
                       always_active=True)
ENV = "FT_BENCH_TOKENS"


class CountingCollator:
    """Calls the real collator and records what the batch holds."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.trained: list[int] = []
        self.slots: list[int] = []

    def __call__(self, features: Any) -> Any:
        batch = self.inner(features)
        labels = batch["labels"]
        self.trained.append(int((labels[:, 1:] != -100).sum()))
        self.slots.append(int(batch["input_ids"].numel()))
        return batch


class TokenWriter(TrainerCallback):
    """Writes the counts when training ends (the collator is attached after the trainer exists)."""

    def __init__(self) -> None:
        self.counter: CountingCollator | None = None

    def on_train_end(self, args, state, control, **kwargs):  # noqa: ANN001
        path = os.environ.get(ENV)
        if path and self.counter is not None:
            with open(path, "w", encoding="utf-8") as handle:
                json.dump({"trained": self.counter.trained, "slots": self.counter.slots}, handle)


_WRITER = TokenWriter()


@hookimpl
def callbacks(ctx: Any) -> list[Any]:
    return [_WRITER]


@hookimpl
def post_trainer_create(ctx: Any) -> None:
    _WRITER.counter = CountingCollator(ctx.trainer.data_collator)
    ctx.trainer.data_collator = _WRITER.counter
