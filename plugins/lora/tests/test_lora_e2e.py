"""End to end on the real SmolLM2-135M-Instruct: ``ft run +adapter=lora`` on GSM8K rows, then ``ft generate``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ft_testing import run_ft


def gsm8k_chat_rows(test_data: Path, out: Path, n: int = 8) -> Path:
    """The first ``n`` GSM8K training problems as chat rows (question -> worked answer)."""
    with (test_data / "gsm8k" / "train.jsonl").open() as handle:
        rows = [json.loads(line) for _, line in zip(range(n), handle)]
    out.write_text("".join(json.dumps({"messages": [{"role": "user", "content": r["question"]},
                                                    {"role": "assistant", "content": r["answer"]}]}) + "\n"
                           for r in rows))
    return out


@pytest.mark.e2e
def test_lora_on_smollm2_then_generate_answers(test_data, tmp_path):
    data = gsm8k_chat_rows(test_data, tmp_path / "gsm8k_chat.jsonl")
    done = run_ft(["run", "model.name_or_path=builtin:smollm2-135m-instruct", "data=chat", f"data.path={data}",
                   "+adapter=lora", "trainer.max_steps=2", "trainer.micro_batch_size=1", "trainer.logging_steps=1",
                   "data.sequence_len=320", "optim.lr=2e-4", f"run.root={tmp_path}", "run.name=lora",
                   "run.plot=false"])
    assert done.returncode == 0, done.stderr[-3000:]
    run_dir = tmp_path / "lora"
    assert (run_dir / "model" / "adapter_model.safetensors").is_file()
    assert "trainable of 139,399,488" in (run_dir / "ft.log").read_text()  # 134.5 M base + 4.9 M adapter
    answer = run_ft(["generate", str(run_dir), "--prompt", "What is the capital of France?",
                     "--max-new-tokens", "10"])
    assert answer.returncode == 0, answer.stderr[-3000:]
    assert "Paris" in answer.stdout
