"""What ft records is what trained: a plugin's defaults are config composed before validation, so the
learning rate in ``config.yaml``, ``run.json``, the model card and the trainer's arguments is one value."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from ft import hookimpl
from ft.api import run_lifecycle
from ft_outputs.card import write_model_card


class _Stop(Exception):
    """Raised by the spy once the training arguments exist: the test needs nothing after them."""


class ArgumentsSpy:
    """Keeps the arguments object the trainer would be built with, then stops the run."""

    args = None

    @hookimpl(tryfirst=True)
    def pre_model_load(self, ctx):
        self.args = ctx.args
        raise _Stop


#: Every embedded default and method, with the learning rate its plugin's defaults give it.
EMBEDDED_DEFAULTS = {
    "default task": ([], 5e-5),
    "default task + lora": (["+adapter=lora"], 1e-3),
    "dpo": (["+method=dpo"], 1e-5),
    "dpo + lora": (["+method=dpo", "+adapter=lora"], 3e-4),
    "ipo": (["+method=ipo"], 1e-5),
    "kto": (["+method=kto"], 1e-5),
    "orpo": (["+method=orpo"], 1e-5),
    "simpo + lora": (["+method=simpo", "+adapter=lora"], 3e-4),
    "grpo": (["+method=grpo"], 1e-5),
    "grpo + lora": (["+method=grpo", "+adapter=lora"], 2e-4),
    "kd": (["+method=kd"], 5e-5),
    "diffusion": (["+method=diffusion"], 5e-5),
    "the user's value wins": (["+adapter=lora", "optim.lr=3e-4"], 3e-4),
}


def _card_learning_rate(run_dir: Path, folder: Path) -> float:
    card = write_model_card(folder, run_dir).read_text()
    return float(re.search(r"^\| learning rate \| ([^|]+) \|$", card, re.MULTILINE).group(1))


@pytest.mark.parametrize("name", list(EMBEDDED_DEFAULTS))
def test_the_learning_rate_recorded_is_the_one_that_trains(name, tiny_model_dir, tmp_path):
    overrides, expected = EMBEDDED_DEFAULTS[name]
    spy = ArgumentsSpy()
    run_dir = tmp_path / "run"
    with pytest.raises(_Stop):
        run_lifecycle([*overrides, f"model.name_or_path={tiny_model_dir}"], run_dir, spy)
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert config["optim"]["lr"] == pytest.approx(expected, rel=1e-12)
    assert spy.args.learning_rate == config["optim"]["lr"]
    assert _card_learning_rate(run_dir, tmp_path / "card") == pytest.approx(config["optim"]["lr"], rel=1e-3)
    record = json.loads((run_dir / "run.json").read_text())
    if "optim.lr=3e-4" not in overrides and expected not in (5e-5, 1e-5):  # a plugin's default, named in the record
        assert record["plugin_defaults"]["optim.lr"] == expected


def test_a_method_preset_for_the_embedded_task_leaves_the_users_data_alone(tmp_path):
    """diffusion holds rows out of the default task only: on 32 rows of the user's data nothing is held out."""
    from ft.api import prepare_run
    from ft_testing import write_chat_rows

    rows = write_chat_rows(tmp_path / "chat.jsonl", n=32)
    own = prepare_run(["+method=diffusion", "data=chat", f"data.path={rows}"])
    assert own.cfg.data.val_size == 0.0 and own.composed.plugin_defaults == {}
    embedded = prepare_run(["+method=diffusion"])
    assert embedded.cfg.data.val_size == 32 and embedded.cfg.data.task.eval_rows == 32
