"""SFT end to end on a tiny model: labels, a falling loss, the run folder, multirun, no overwrite."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from ft.cli import main
from ft_data.api import IGNORE_INDEX, format_alpaca, format_chat_template


def tiny_run_args(model_dir: Path, data: Path, root: Path, name: str, steps: int = 16) -> list[str]:
    return [
        f"model.name_or_path={model_dir}", "data=chat", f"data.path={data}", f"trainer.max_steps={steps}",
        "trainer.micro_batch_size=8", "trainer.logging_steps=2", "optim.lr=3e-3", "optim.warmup_steps=0",
        f"run.root={root}", f"run.name={name}",
    ]


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_dir)


def test_alpaca_labels_mask_the_prompt_and_train_response_and_eos(tokenizer):
    row = {"instruction": "Add the numbers.", "input": "2 and 3", "output": "The sum is 5."}
    example = format_alpaca(row, tokenizer, options=None)
    ids, labels = example["input_ids"], example["labels"]
    trained = [t for t, l in zip(ids, labels) if l != IGNORE_INDEX]
    assert tokenizer.decode(trained) == "The sum is 5.<|im_end|>"
    assert all(l in (IGNORE_INDEX, t) for t, l in zip(ids, labels))
    assert "### Input:\n2 and 3" in tokenizer.decode(ids)


def test_chat_labels_train_assistant_turns_and_end_of_turn_only(tokenizer):
    row = {"messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello."},
        {"role": "user", "content": "Bye"},
        {"role": "assistant", "content": "Goodbye."},
    ]}
    example = format_chat_template(row, tokenizer, options=None)
    ids, labels = example["input_ids"], example["labels"]
    runs, current = [], []
    for token, label in zip(ids, labels):
        if label == IGNORE_INDEX:
            if current:
                runs.append(tokenizer.decode(current))
                current = []
        else:
            current.append(token)
    if current:
        runs.append(tokenizer.decode(current))
    assert runs == ["Hello.<|im_end|>", "Goodbye.<|im_end|>"]


def test_sft_run_loss_falls_and_run_folder_is_complete(tiny_model_dir, chat_file, tmp_path, capsys):
    assert main(["run", *tiny_run_args(tiny_model_dir, chat_file, tmp_path, "sft")]) == 0
    run = tmp_path / "sft"
    for name in ("config.yaml", "run.json", "ft.log", "metrics.jsonl", "loss.png", "summary.json"):
        assert (run / name).is_file(), name
    assert (run / "model" / "model.safetensors").is_file()
    assert (run / "model" / "tokenizer.json").is_file()
    checkpoints = list((run / "checkpoints").glob("checkpoint-*"))
    assert checkpoints and (checkpoints[-1] / "optimizer.pt").is_file()
    losses = [r["loss"] for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines()) if "loss" in r]
    assert len(losses) >= 5
    assert losses[-1] < 0.7 * losses[0], losses
    pace = [line for line in (run / "ft.log").read_text().splitlines() if "pace: " in line]
    assert len(pace) == 1 and re.search(r"pace: \d+\.\d s a step; 14 steps left, about \d+ (s|min)", pace[0]), pace
    record = json.loads((run / "run.json").read_text())
    assert record["choices"]["method"] == "sft"
    assert any(p["name"] == "sft" and p["active"] for p in record["plugins"])
    assert "torch" in record["packages"]

    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(run / "model")
    assert model.config.num_hidden_layers == 2
    assert_model_card(run, chat_file, library="transformers")


def test_bf16_without_a_gpu_trains_under_cpu_autocast(tiny_model_dir, chat_file, tmp_path):
    """trainer.precision=bf16 on a machine without a GPU: bf16 autocast on the CPU (transformers alone refuses
    it), so the losses move off fp32's by bf16 rounding only, and the saved weights stay fp32."""
    losses = {}
    for precision in ("fp32", "bf16"):
        args = tiny_run_args(tiny_model_dir, chat_file, tmp_path, precision, steps=4)
        assert main(["run", *args, f"trainer.precision={precision}", "trainer.logging_steps=1"]) == 0
        rows = map(json.loads, (tmp_path / precision / "metrics.jsonl").read_text().splitlines())
        losses[precision] = [r["loss"] for r in rows if "loss" in r]
    assert len(losses["bf16"]) == len(losses["fp32"]) == 4
    assert losses["bf16"] != losses["fp32"]  # autocast really ran in bf16
    assert losses["bf16"] == pytest.approx(losses["fp32"], rel=0.05)

    from safetensors import safe_open

    with safe_open(str(tmp_path / "bf16" / "model" / "model.safetensors"), "pt") as weights:
        assert {str(weights.get_tensor(k).dtype) for k in weights.keys()} == {"torch.float32"}


def assert_model_card(run: Path, data_file: Path, library: str, folder: str = "model") -> None:
    """The saved model's README.md is a Hugging Face model card that says how the model was made."""
    import hashlib

    from huggingface_hub import ModelCard

    card = ModelCard.load(run / folder / "README.md")
    assert card.data.library_name == library and card.data.pipeline_tag == "text-generation"
    assert "ft" in card.data.tags and "sft" in card.data.tags
    file_hash = hashlib.sha256(data_file.read_bytes()).hexdigest()
    record = json.loads((run / "datasets.json").read_text())
    assert record["sources"] == [{"path": str(data_file), "split": "train", "sha256": file_hash}]
    assert record["splits"]["train"]["examples"] == 48
    assert file_hash in card.text and record["splits"]["train"]["sha256"] in card.text
    summary = json.loads((run / "summary.json").read_text())
    assert f"| train_loss | {summary['train_loss']:.4g} |" in card.text
    assert "| learning rate | 0.003 |" in card.text and "![training loss](loss.png)" in card.text
    assert (run / folder / "loss.png").read_bytes() == (run / "loss.png").read_bytes()
    assert "- torch " in card.text and "- ft 0." in card.text


def test_an_existing_run_folder_is_never_overwritten(tiny_model_dir, chat_file, tmp_path, capsys):
    run = tmp_path / "taken"
    run.mkdir()
    (run / "config.yaml").write_text("precious: true\n")
    code = main(["run", *tiny_run_args(tiny_model_dir, chat_file, tmp_path, "taken", steps=2)])
    assert code == 2
    assert "already exists" in capsys.readouterr().err
    assert (run / "config.yaml").read_text() == "precious: true\n"
    assert sorted(p.name for p in run.iterdir()) == ["config.yaml"]


def test_multirun_gives_one_folder_per_job_and_a_summary_table(tiny_model_dir, chat_file, tmp_path, capsys):
    args = tiny_run_args(tiny_model_dir, chat_file, tmp_path, "unused", steps=4)
    args = [a for a in args if not a.startswith(("optim.lr", "run.name"))]
    assert main(["run", "-m", "optim.lr=1e-4,3e-4", *args]) == 0
    out = capsys.readouterr().out
    sweeps = list(tmp_path.glob("sweep-*"))
    assert len(sweeps) == 1
    jobs = sorted(p for p in sweeps[0].iterdir() if p.is_dir())
    assert [p.name for p in jobs] == ["0", "1"]
    for job in jobs:
        assert (job / "model" / "model.safetensors").is_file()
        assert (job / "config.yaml").is_file()
    lrs = {float(json.loads((job / "run.json").read_text())["command"].split("optim.lr=")[1].split()[0]) for job in jobs}
    assert lrs == {1e-4, 3e-4}
    assert {json.loads((job / "config.yaml").read_text().replace("'", '"').split("lr: ")[1].split()[0]) for job in jobs} == {1e-4, 3e-4}
    assert "Sweep summary (2 jobs" in out
    table = (sweeps[0] / "summary.md").read_text()
    assert "optim.lr" in table and "0.0001" in table and "0.0003" in table and "train_loss" in table
    assert (sweeps[0] / "summary.png").is_file()
