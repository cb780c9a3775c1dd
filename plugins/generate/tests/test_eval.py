"""``ft eval``: held-out loss equal to the model's own cross entropy, perplexity, exact match, clear errors."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from ft.cli import main
from ft_testing import write_chat_rows


@pytest.fixture(scope="module")
def trained_run(tiny_model_dir, tmp_path_factory):
    """A tiny SFT run that kept a held-out file (data.val_path)."""
    root = tmp_path_factory.mktemp("eval-run")
    train = write_chat_rows(root / "train.jsonl", n=48)
    heldout = root / "heldout.jsonl"
    rows = [{"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]}
            for q, a in (("What is 2 plus 3?", "2 plus 3 is 5."), ("Name a colour.", "Blue is a colour."),
                         ("Sort 3, 1, 2.", "1, 2, 3"), ("What is 4 plus 4?", "4 plus 4 is 8."))]
    heldout.write_text("".join(json.dumps(r) + "\n" for r in rows))
    args = [f"model.name_or_path={tiny_model_dir}", "data=chat", f"data.path={train}", f"data.val_path={heldout}",
            "trainer.max_steps=12", "trainer.micro_batch_size=8", "optim.lr=3e-3", "optim.warmup_steps=0",
            f"run.root={root}", "run.name=run"]
    assert main(["run", *args]) == 0
    return root / "run", heldout, rows


def reference_loss(model_dir: Path, rows: list[dict]) -> float:
    """Mean cross entropy per answer token, one row at a time, with transformers' own loss."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ft_data.api import format_chat_template

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    total, count = 0.0, 0
    for row in rows:
        example = format_chat_template(row, tokenizer, options=None)
        labels = torch.tensor([example["labels"]])
        with torch.no_grad():
            loss = model(input_ids=torch.tensor([example["input_ids"]]), labels=labels).loss
        n = int((labels[:, 1:] != -100).sum())
        total, count = total + float(loss) * n, count + n
    return total / count


def test_eval_of_a_run_uses_its_held_out_file_and_matches_the_models_own_loss(trained_run, tmp_path, capsys):
    run_dir, heldout, rows = trained_run
    out_json = tmp_path / "eval.json"
    assert main(["eval", str(run_dir), "--json", str(out_json), "--batch-size", "3", "--max-new-tokens", "12"]) == 0
    table = capsys.readouterr().out
    result = json.loads(out_json.read_text())
    assert result["data"] == f"the run's data.val_path ({heldout})" and result["rows"] == 4
    assert result["loss"] == pytest.approx(reference_loss(run_dir / "model", rows), rel=1e-5)
    assert result["perplexity"] == pytest.approx(math.exp(result["loss"]))
    assert result["answered"] == 4 and 0.0 <= result["exact_match"] <= 1.0
    hits = sum(" ".join(s["generated"].split()) == s["expected"] for s in result["samples"])
    assert result["exact_match"] == hits / 4
    assert f"loss         {result['loss']:.4f}" in table and "exact match" in table
    # The file is never overwritten.
    assert main(["eval", str(run_dir), "--json", str(out_json)]) == 2
    assert "exists" in capsys.readouterr().err


def test_eval_on_named_data_and_a_plain_model_folder(trained_run, tiny_model_dir, tmp_path, capsys):
    run_dir, heldout, rows = trained_run
    # Another file, evaluated row by row with the run's data format (data=chat comes from the run).
    assert main(["eval", str(run_dir / "model"), f"data.path={heldout}", "--no-generate", "--json", "-"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["data"] == f"{heldout} (every row)" and "exact_match" not in result
    assert result["loss"] == pytest.approx(reference_loss(run_dir / "model", rows), rel=1e-5)
    # The untrained base, a folder outside any run: it needs data, and is worse than the trained model.
    assert main(["eval", str(tiny_model_dir)]) == 2
    assert "not an ft run folder" in capsys.readouterr().err
    assert main(["eval", str(tiny_model_dir), "data=chat", f"data.path={heldout}", "--no-generate", "--json", "-"]) == 0
    base = json.loads(capsys.readouterr().out)
    assert base["loss"] > result["loss"]
    assert main(["eval", str(run_dir), "trainer.max_steps=3"]) == 2
    assert "data overrides only" in capsys.readouterr().err
