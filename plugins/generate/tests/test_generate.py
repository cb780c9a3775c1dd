"""``ft generate`` / ``ft chat``: the reply equals plain transformers' greedy decode of the chat template,
for a full fine-tune's run folder, a PEFT adapter folder (base + adapter), and a plain model folder."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
import torch

from ft.cli import main

PROMPT = "What is 2 plus 3?"


def greedy(model, tokenizer, messages: list[dict[str, str]], max_new_tokens: int) -> str:
    """What a user would write with transformers alone: chat template, greedy decode, new tokens."""
    inputs = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_dict=True, return_tensors="pt")
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False,
                             eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    return tokenizer.decode(out[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True)


@pytest.fixture(scope="module")
def full_run(tiny_model_dir, tmp_path_factory) -> Path:
    """A short full fine-tune on the chat rows, so that the model answers something sensible."""
    from ft_testing import write_chat_rows

    root = tmp_path_factory.mktemp("gen-runs")
    chat = write_chat_rows(root / "chat.jsonl")
    args = [f"model.name_or_path={tiny_model_dir}", "data=chat", f"data.path={chat}", "trainer.max_steps=30",
            "trainer.micro_batch_size=8", "optim.lr=3e-3", f"run.root={root}", "run.name=full", "run.plot=false"]
    assert main(["run", *args]) == 0
    return root / "full"


@pytest.fixture(scope="module")
def adapter_dir(tiny_model_dir, tmp_path_factory) -> Path:
    """A PEFT adapter saved by plain PEFT (non-zero B, so it changes the output), without a tokenizer."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    model = get_peft_model(base, LoraConfig(r=4, lora_alpha=64, target_modules=["q_proj", "v_proj", "down_proj"],
                                            init_lora_weights=False))
    folder = tmp_path_factory.mktemp("adapter") / "adapter"
    model.save_pretrained(folder)
    return folder


def generate(capsys, *args: str) -> tuple[int, str, str]:
    code = main(["generate", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_generate_with_a_full_fine_tune_run_folder(full_run, capsys):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    code, out, err = generate(capsys, str(full_run), "--prompt", PROMPT, "--max-new-tokens", "12")
    assert code == 0
    model = AutoModelForCausalLM.from_pretrained(full_run / "model").eval()
    tokenizer = AutoTokenizer.from_pretrained(full_run / "model")
    expected = greedy(model, tokenizer, [{"role": "user", "content": PROMPT}], 12)
    assert out == expected + "\n"  # the reply alone on stdout; what was loaded goes to stderr
    assert expected.strip()
    assert f"model {full_run / 'model'}" in err


def test_generate_with_an_adapter_folder_applies_it_on_the_base(adapter_dir, tiny_model_dir, capsys):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    code, out, err = generate(capsys, str(adapter_dir), "--prompt", PROMPT, "--max-new-tokens", "10")
    assert code == 0
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    messages = [{"role": "user", "content": PROMPT}]
    base_only = greedy(base, tokenizer, messages, 10)
    adapted = greedy(PeftModel.from_pretrained(base, str(adapter_dir)).eval(), tokenizer, messages, 10)
    assert adapted != base_only  # the adapter matters, so the comparison below means something
    assert out == adapted + "\n"
    assert f"base {tiny_model_dir} + adapter {adapter_dir}" in err


def test_generate_with_a_plain_model_folder_and_a_system_message(tiny_model_dir, capsys):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    code, out, _ = generate(capsys, str(tiny_model_dir), "--prompt", PROMPT, "--system", "Be brief.",
                            "--max-new-tokens", "6", "--no-stream")
    assert code == 0
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": PROMPT}]
    assert out == greedy(model, tokenizer, messages, 6) + "\n"


def test_chat_keeps_the_conversation_and_reset_starts_over(full_run, monkeypatch, capsys):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    lines = "What is 2 plus 3?\nName a colour.\n/reset\nName a colour.\n/exit\nnever read\n"
    monkeypatch.setattr("sys.stdin", io.StringIO(lines))
    assert main(["chat", str(full_run), "--max-new-tokens", "10"]) == 0
    out = capsys.readouterr().out
    model = AutoModelForCausalLM.from_pretrained(full_run / "model").eval()
    tokenizer = AutoTokenizer.from_pretrained(full_run / "model")
    first = greedy(model, tokenizer, [{"role": "user", "content": "What is 2 plus 3?"}], 10)
    history = [{"role": "user", "content": "What is 2 plus 3?"}, {"role": "assistant", "content": first},
               {"role": "user", "content": "Name a colour."}]
    second = greedy(model, tokenizer, history, 10)
    fresh = greedy(model, tokenizer, [{"role": "user", "content": "Name a colour."}], 10)
    assert out == f"{first}\n{second}\n{fresh}\n"


def test_generate_on_a_folder_without_a_model_is_one_line(tmp_path, capsys):
    code, _, err = generate(capsys, str(tmp_path), "--prompt", "hi")
    assert code == 2
    assert err.strip() == (f"ft: error: {tmp_path}: no model found (expected an ft run folder with model/, "
                           f"or a folder with config.json or a PEFT adapter_config.json)")


def test_generate_on_a_run_without_final_model_points_at_its_checkpoints(tmp_path, capsys):
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.yaml").write_text("model: {}\n")
    code, _, err = generate(capsys, str(run), "--prompt", "hi")
    assert code == 2 and "the run has no final model (model/); pass one of its checkpoints" in err


def test_generate_and_chat_are_listed_by_ft_help(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "generate" in out and "chat with a run's model in the terminal" in out
    assert main(["plugins", "--json"]) == 0
    listing = {p["name"]: p for p in json.loads(capsys.readouterr().out)}
    assert listing["generate"]["builtin"] and listing["generate"]["hooks"] == ["cli_commands"]
