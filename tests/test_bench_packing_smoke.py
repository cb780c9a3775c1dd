"""``bench/packing/run.py --smoke`` runs end to end: lengths through ft's data stage, the efficiency
table, and one timed step of packed and padded ``ft run`` each, and prints both figures."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.slow  # a benchmark's processes: the full tier
def test_packing_bench_smoke(tiny_model_dir, test_data, tmp_path):
    env = {**os.environ, "FT_BENCH_CACHE": str(tmp_path / "bench-cache"), "FT_BENCH_DATA": str(test_data),
           "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    done = subprocess.run([sys.executable, "bench/packing/run.py", "--smoke", "--model-dir", str(tiny_model_dir)],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-4000:]
    efficiency = re.search(r"efficiency at 2048: ft (\d\.\d+) \(min (\d\.\d+)\).*, padded-8 (\d\.\d+)", output)
    assert efficiency, output[-4000:]
    # 300 rows: the packer must reach at least 0.95 of the token slots (the lower bound here is about 0.97)
    assert 0.95 <= float(efficiency.group(2)) <= float(efficiency.group(1)) <= 1.0
    assert float(efficiency.group(3)) < float(efficiency.group(1))
    ratio = re.search(r"speedup packed / padded: (\d+\.\d+)x", output)
    assert ratio and float(ratio.group(1)) > 0, output[-4000:]
    assert "trained tokens/s" in output
    assert "not recorded" in output
