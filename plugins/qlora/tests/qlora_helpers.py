"""Helpers for ft-qlora's tests (a uniquely named module: plugin test folders share one pytest run): run the real lifecycle in-process with a spy plugin watching the model."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from ft import hookimpl
from ft_testing import run_lifecycle  # noqa: F401  (re-exported for the tests)

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


class ModelSpy:
    """A test plugin: snapshots the parameters after the adapter wraps the model and again at save,
    and records the in-memory model's logits on ``probe_ids`` (train and eval mode) when it is saved."""

    def __init__(self, probe_ids: list[int]) -> None:
        self.probe_ids = probe_ids
        self.initial: dict[str, Any] = {}
        self.trainable: set[str] = set()
        self.final: dict[str, Any] = {}
        self.logits: Any = None
        self.train_logits: Any = None
        self.model: Any = None

    @hookimpl(trylast=True)
    def post_model_load(self, ctx: Any) -> None:
        self.initial = {n: p.detach().clone() for n, p in ctx.model.named_parameters()}
        self.trainable = {n for n, p in ctx.model.named_parameters() if p.requires_grad}

    @hookimpl
    def post_save(self, ctx: Any, output_dir: str) -> None:
        import torch

        self.model = ctx.model
        self.final = {n: p.detach().clone() for n, p in ctx.model.named_parameters()}
        ids = torch.tensor([self.probe_ids])
        # Train mode (with adapter.dropout=0) takes the path training took: bitsandbytes de-quantises
        # the 4-bit weights and multiplies in the compute dtype.
        ctx.model.train()
        with torch.no_grad():
            self.train_logits = ctx.model(input_ids=ids).logits.float()
        # Eval mode without grad: bitsandbytes would switch to its bf16 CPU inference kernel (AVX512-BF16
        # CPUs) here; ft-qlora turns that off, so these equal the train-mode logits.
        ctx.model.eval()
        with torch.no_grad():
            self.logits = ctx.model(input_ids=ids).logits.float()


def tiny_args(model_dir: Path, data: Path, steps: int = 12, lr: float = 5e-3) -> list[str]:
    return [
        f"model.name_or_path={model_dir}", "data=chat", f"data.path={data}", f"trainer.max_steps={steps}",
        "trainer.micro_batch_size=8", "trainer.logging_steps=2", f"optim.lr={lr}", "optim.warmup_steps=0",
        "run.plot=false",
    ]


@pytest.fixture(scope="session")
def probe_ids(tiny_model_dir) -> list[int]:
    """A chat prompt in token ids, to compare logits on."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    messages = [{"role": "user", "content": "What is 2 plus 3?"}, {"role": "assistant", "content": "2 plus 3 is 5."}]
    return tokenizer.apply_chat_template(messages, tokenize=True, return_dict=True)["input_ids"]
