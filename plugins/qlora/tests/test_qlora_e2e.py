"""End to end on the real SmolLM2-135M-Instruct: ``ft run +adapter=qlora`` on GSM8K rows, then ``ft generate``,
and ``ft merge`` into the de-quantised base."""

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
def test_qlora_on_smollm2_then_generate_answers(test_data, tmp_path):
    data = gsm8k_chat_rows(test_data, tmp_path / "gsm8k_chat.jsonl")
    done = run_ft(["run", "model.name_or_path=builtin:smollm2-135m-instruct", "data=chat", f"data.path={data}",
                   "+adapter=qlora", "trainer.max_steps=2", "trainer.micro_batch_size=1", "trainer.logging_steps=1",
                   "data.sequence_len=320", "optim.lr=2e-4", f"run.root={tmp_path}", "run.name=qlora",
                   "run.plot=false"])
    assert done.returncode == 0, done.stderr[-3000:]
    run_dir = tmp_path / "qlora"
    assert (run_dir / "model" / "adapter_model.safetensors").is_file()
    log = (run_dir / "ft.log").read_text()
    assert "trainable of 139,399,488" in log  # 134.5 M base (packed 4-bit counted in full) + 4.9 M adapter
    assert "qlora: base loaded in 4-bit nf4" in log and "210 linear layers quantised" in log
    answer = run_ft(["generate", str(run_dir), "--prompt", "What is the capital of France?",
                     "--max-new-tokens", "10"])
    assert answer.returncode == 0, answer.stderr[-3000:]
    assert "Paris" in answer.stdout
    merged = run_ft(["merge", str(run_dir)])
    assert merged.returncode == 0, merged.stderr[-3000:]
    assert "merged into that base de-quantised to float32" in merged.stdout
    config = json.loads((run_dir / "merged" / "config.json").read_text())
    assert "quantization_config" not in config and (run_dir / "merged" / "model.safetensors").is_file()
