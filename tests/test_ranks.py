"""The rank-aware lifecycle: ``ft run`` under torchrun writes one run, like one process would."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from ft_testing import write_chat_rows


@pytest.mark.slow
def test_ft_run_under_torchrun_with_two_ranks_writes_one_folder_one_summary_one_model(tiny_model_dir, tmp_path):
    rows = write_chat_rows(tmp_path / "chat.jsonl", n=32)
    root = tmp_path / "runs"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "ft", "run",
               f"model.name_or_path={tiny_model_dir}", "data=chat", f"data.path={rows}", f"run.root={root}",
               "trainer.micro_batch_size=2", "trainer.max_steps=3", "trainer.logging_steps=1"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1",
           "FT_CACHE_DIR": str(tmp_path / "cache")}
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]

    runs = sorted(root.iterdir())
    assert len(runs) == 1, runs  # every rank agreed on rank 0's folder; no stray folder from another clock
    run = runs[0]
    assert json.loads((run / "run.json").read_text())["world_size"] == 2
    assert (run / "ft.log").is_file() and (run / "ft.rank1.log").is_file()
    summary = json.loads((run / "summary.json").read_text())
    assert summary["train_loss"] > 0
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()
             if "loss" in json.loads(line)]
    assert steps == [1, 2, 3]  # written once (rank 0), not once per rank
    assert (run / "model" / "model.safetensors").is_file() and not (run / "model.partial").exists()
    assert (run / "loss.png").is_file()
    assert result.stdout.count("run folder:") + result.stderr.count("run folder:") == 1  # one console, rank 0's

    check = subprocess.run(  # the saved model loads in plain transformers, in a process without ft
        [sys.executable, "-c", "import sys; from transformers import AutoModelForCausalLM; "
         f"AutoModelForCausalLM.from_pretrained({str(run / 'model')!r}); "
         "assert 'ft' not in sys.modules; print('ok')"], capture_output=True, text=True, timeout=300, env=env)
    assert check.stdout.strip() == "ok", check.stderr[-2000:]
