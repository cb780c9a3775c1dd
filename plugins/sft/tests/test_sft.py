"""method=sft builds ft's hook-aware transformers.Trainer, and declares what it is to other plugins."""

from __future__ import annotations

from ft_testing import build_context, write_chat_rows


def test_sft_builds_the_hook_aware_trainer_and_declares_its_traits(tiny_model_dir, tmp_path):
    from transformers import Trainer

    rows = write_chat_rows(tmp_path / "chat.jsonl", n=8)
    ctx = build_context([f"model.name_or_path={tiny_model_dir}", "data=chat", f"data.path={rows}"], tmp_path / "run")
    assert isinstance(ctx.trainer, Trainer) and type(ctx.trainer).__name__ == "FtTrainer"
    assert ctx.trainer.ft_ctx is ctx and ctx.choices["method"] == "sft"
    assert set(ctx.method_traits) == {"packable", "token_loss"}
