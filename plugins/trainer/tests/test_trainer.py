"""ft-trainer: the trainer class every method builds from, and the fallback loop and save."""

from __future__ import annotations

import json
from pathlib import Path

from ft_trainer.api import ft_trainer_class
from transformers import Trainer

from ft.api import hookimpl, run_lifecycle
from ft_testing import write_chat_rows


def test_the_trainer_class_subclasses_its_base_once_and_is_named_after_it():
    cls = ft_trainer_class(Trainer)
    assert issubclass(cls, Trainer) and cls.__name__ == "FtTrainer"
    assert ft_trainer_class(Trainer) is cls  # one class per base: checkpoints unpickle, isinstance holds


class BatchCounter:
    """Counts the batches ``process_batch`` saw and the loss calls, while training."""

    def __init__(self) -> None:
        self.batches = 0
        self.losses = 0

    @hookimpl
    def process_batch(self, ctx, batch, training):
        self.batches += int(training)

    @hookimpl(wrapper=True)
    def loss(self, ctx, call):
        result = yield
        self.losses += int(call.training)
        return result


def test_every_micro_batch_goes_through_the_hooks_and_the_model_is_saved_whole(tiny_model_dir, tmp_path):
    rows = write_chat_rows(tmp_path / "chat.jsonl", n=16)
    counter = BatchCounter()
    run_dir = tmp_path / "run"
    metrics = run_lifecycle([f"model.name_or_path={tiny_model_dir}", "data=chat", f"data.path={rows}",
                             "trainer.micro_batch_size=2", "trainer.gradient_accumulation_steps=2",
                             "trainer.max_steps=3", "run.plot=false"], run_dir, counter)
    assert counter.batches == counter.losses == 3 * 2  # 3 optimizer steps of 2 micro-batches
    assert metrics["train_loss"] > 0
    model = run_dir / "model"
    assert (model / "config.json").is_file() and (model / "tokenizer.json").is_file()
    assert not (model / "training_args.bin").exists() and not Path(f"{model}.partial").exists()
    assert json.loads((model / "config.json").read_text())["model_type"] == "llama"


def test_leaving_the_trainer_out_is_one_line_at_validate(capsys):
    from ft.api import cli_main

    assert cli_main(["-p", "no:trainer", "validate"]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        "ft: error: no active plugin implements 'training_args_class' (capability 'trainer'), which every run "
        "needs; was a builtin plugin left out with -p no:NAME? (`ft plugins --all` lists them)")
