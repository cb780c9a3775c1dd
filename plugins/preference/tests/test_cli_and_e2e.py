"""``ft prefs convert/check`` on the real data sets, and DPO end to end on the real SmolLM2."""

from __future__ import annotations

import json
import math

import pytest
from pref_helpers import read_jsonl

from ft.cli import main
from ft_testing import run_ft


def test_convert_hh_rlhf_dialogues_into_prompt_chosen_rejected(test_data, tmp_path, capsys):
    out = tmp_path / "hh.jsonl"
    source = test_data / "hh-rlhf" / "harmless-base-test.jsonl.gz"
    assert main(["prefs", "convert", "--from", "hh-rlhf", "--style", "text", "--bad-rows", "drop", str(source), str(out)]) == 0
    printed = capsys.readouterr().out
    rows = read_jsonl(out)
    assert f"wrote {len(rows)} paired rows" in printed and "dropped_empty_completion=1" in printed
    assert len(rows) == 150 - 1  # the slice's 150 dialogues; the 87th has an empty chosen reply
    assert all(r["prompt"].endswith("\n\nAssistant:") and r["chosen"] != r["rejected"] for r in rows)
    # Without --bad-rows drop, the first malformed row stops the conversion with its row number.
    assert main(["prefs", "convert", "--from", "hh-rlhf", str(source), str(tmp_path / "x.jsonl")]) == 2
    assert "row " in capsys.readouterr().err


def test_convert_gsm8k_solutions_to_kto_rows_and_check_them(test_data, tmp_path, capsys):
    out = tmp_path / "kto.jsonl"
    source = test_data / "gsm8k" / "example_model_solutions.jsonl"
    assert main(["prefs", "convert", "--from", "gsm8k", "--to", "kto", str(source), str(out)]) == 0
    rows = read_jsonl(out)
    assert {r["label"] for r in rows} == {True, False}
    assert all(r["prompt"][0]["role"] == "user" and r["completion"][0]["role"] == "assistant" for r in rows)
    capsys.readouterr()
    assert main(["prefs", "check", "--kto", str(out)]) == 0
    assert f"OK as unpaired rows (rows_in={len(rows)}, rows_out={len(rows)}, prompts=80)" in capsys.readouterr().out


@pytest.mark.e2e
def test_dpo_with_lora_on_smollm2_from_gsm8k_solutions(test_data, tmp_path):
    """The real model, GSM8K model solutions converted on the fly, a few steps on CPU."""
    result = run_ft([
        "run", "+adapter=lora", "+method=dpo", "model.name_or_path=builtin:smollm2-135m-instruct",
        f"data.path={test_data / 'gsm8k' / 'example_model_solutions.jsonl'}", "data.max_rows=12",
        "data.val_size=2", "data.max_eval_rows=2", "trainer.micro_batch_size=2", "trainer.max_steps=2",
        "trainer.logging_steps=1", "trainer.eval_steps=100", "optim.lr=3e-4", "run.save_final_model=false",
        f"run.root={tmp_path}", "run.name=e2e",
    ], timeout=1800)
    assert result.returncode == 0, result.stderr[-3000:]
    run = tmp_path / "e2e"
    records = read_jsonl(run / "metrics.jsonl")
    assert all(math.isfinite(r["loss"]) for r in records if "loss" in r)
    summary = json.loads((run / "summary.json").read_text())
    for key in ("heldout_reward_accuracy_before", "heldout_reward_accuracy_after", "heldout_reward_margin_after"):
        assert key in summary
    assert "reference: the base model with the adapter disabled" in (run / "ft.log").read_text()
    assert "heldout reward accuracy" in result.stdout


def test_the_headline_command_validates_with_no_data_argument():
    for method in ("dpo", "kto"):
        result = run_ft(["validate", "+adapter=qlora", f"+method={method}"])
        assert result.returncode == 0, result.stderr


def test_dpo_with_no_data_path_trains_on_the_embedded_default_pairs(tiny_model_dir, tmp_path):
    """``ft run +adapter=lora +method=dpo`` with nothing else: pairs made from the default task, held-out
    reward accuracy before (0: a tie with the reference, said so) and after, the embedded learning rate."""
    result = run_ft(["run", "+adapter=lora", "+method=dpo", f"model.name_or_path={tiny_model_dir}",
                     "data.task.train_pairs=16", "data.task.eval_pairs=8", f"run.root={tmp_path}", "run.name=dflt"])
    assert result.returncode == 0, result.stderr[-3000:]
    run = tmp_path / "dflt"
    log = (run / "ft.log").read_text()
    assert "data: the embedded default: 16 sort-numbers pairs" in log and "8 held out" in log
    summary = json.loads((run / "summary.json").read_text())
    assert summary["heldout_reward_accuracy_before"] == 0.0 and "heldout_reward_accuracy_after" in summary
    assert "0 before training is a tie, not a miss" in result.stdout
    first = next(r for r in read_jsonl(run / "metrics.jsonl") if "learning_rate" in r)
    assert first["learning_rate"] <= 3e-4 and first["learning_rate"] > 1e-4  # the adapter's embedded rate


def test_a_learning_rate_the_user_sets_wins_over_the_embedded_default(tiny_model_dir, tmp_path):
    result = run_ft(["run", "+method=dpo", f"model.name_or_path={tiny_model_dir}", "data.task.train_pairs=8",
                     "data.task.eval_pairs=0", "optim.lr=7e-6", "optim.scheduler=constant", "trainer.logging_steps=1",
                     f"run.root={tmp_path}", "run.name=lr"])
    assert result.returncode == 0, result.stderr[-3000:]
    rates = {r["learning_rate"] for r in read_jsonl(tmp_path / "lr" / "metrics.jsonl") if "learning_rate" in r}
    assert rates == {7e-6}
