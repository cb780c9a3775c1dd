"""What the launching `ft run` makes of its ranks' endings, and how a rank ends its part (fast, no ranks started)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import pytest
from torch.distributed.elastic.multiprocessing.errors import ChildFailedError, ProcessFailure

from ft.launch import _failure


def silent_failure(local_rank: int, exitcode: int, at: float) -> ProcessFailure:
    """A rank that ended by a signal, leaving no error file (the way a crash at exit ends)."""
    failure = ProcessFailure(local_rank=local_rank, pid=1000 + local_rank, exitcode=exitcode, error_file="<none>")
    failure.timestamp = int(at)
    return failure


def test_a_rank_that_crashed_is_named_not_the_rank_the_launcher_stopped_after_it(tmp_path):
    """torch records the SIGTERM it sends the survivors as failures too; the first to end is the cause."""
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "run.json").write_text(json.dumps({"status": "running"}))
    (tmp_path / "run_dir").write_text(str(run_dir))
    now = time.time()
    failures = {0: silent_failure(0, -signal.SIGTERM, now + 2), 1: silent_failure(1, -signal.SIGABRT, now)}
    error = _failure(ChildFailedError("ft", failures), tmp_path)
    assert str(error) == "rank 1 failed: exited with code -6 (SIGABRT)"
    assert json.loads((run_dir / "run.json").read_text()) == {"status": "failed", "error": str(error)}


def test_a_rank_that_died_silently_is_reported_with_the_last_line_it_wrote(tmp_path):
    """A crash in C++ (gloo, at exit) leaves no error record; its last stderr line says why, without opening the log."""
    rank_logs = tmp_path / "logs" / "run-id_x" / "attempt_0" / "1"
    rank_logs.mkdir(parents=True)
    (rank_logs / "stdout.log").write_text("{'loss': '6.35'}\n")
    (rank_logs / "stderr.log").write_text(
        " 33%|###  | 1/3\r 67%|###### | 2/3\r100%|#########| 3/3\n"
        "terminate called after throwing an instance of 'gloo::IoException'\n"
        "  what():  [gloo/transport/tcp/pair.cc:598] Connection closed by peer [127.0.0.1]:29500\n\n")
    failures = {0: silent_failure(0, -signal.SIGTERM, time.time() + 1), 1: silent_failure(1, -signal.SIGABRT, time.time())}
    error = _failure(ChildFailedError("ft", failures), tmp_path)
    assert str(error) == ("rank 1 failed: exited with code -6 (SIGABRT); its last line: what():  "
                          "[gloo/transport/tcp/pair.cc:598] Connection closed by peer [127.0.0.1]:29500 "
                          f"(its output: {rank_logs})")
    (rank_logs / "stderr.log").write_text(" 67%|###### | 2/3\r100%|#########| 3/3\r")
    assert "its last line: 100%|#########| 3/3 (its output" in str(_failure(ChildFailedError("ft", failures), tmp_path))


def test_a_recorded_one_line_error_wins_over_exit_codes(tmp_path):
    (tmp_path / "failure.rank1.json").write_text(json.dumps(
        {"rank": 1, "time": time.time(), "error": "row 7 of chat.jsonl has no assistant turn", "exit_code": 2}))
    failures = {0: silent_failure(0, -signal.SIGTERM, time.time()), 1: silent_failure(1, 2, time.time())}
    error = _failure(ChildFailedError("ft", failures), tmp_path)
    assert str(error) == "rank 1 failed: row 7 of chat.jsonl has no assistant turn"
    assert error.exit_code == 2


RANK_ENDING = """
import atexit, sys
from pathlib import Path
import torch.distributed as dist
from ft.distributed import exit_process

out = Path(sys.argv[1])
if sys.argv[3] == "group":
    dist.init_process_group("gloo", store=dist.FileStore(str(out / "store"), 1), rank=0, world_size=1)
atexit.register(lambda: (out / "exit-handlers-ran").write_text("yes"))
sys.stdout.write("buffered, no newline")
exit_process(int(sys.argv[2]))
raise AssertionError("exit_process returned")
"""


@pytest.mark.parametrize("group", ["group", "no-group"])
@pytest.mark.parametrize("code", [0, 3])
def test_a_rank_ends_with_its_code_after_exit_handlers_and_flushed_output(tmp_path, code, group):
    """A rank in a process group leaves without native teardown (gloo's threads aborted it at interpreter exit,
    SIGABRT after a run that went well), yet keeps its exit code, its exit handlers and its buffered output."""
    script = tmp_path / "rank.py"
    script.write_text(RANK_ENDING)
    done = subprocess.run([sys.executable, str(script), str(tmp_path), str(code), group], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == code, done.stderr[-2000:]
    assert done.stdout.endswith("buffered, no newline")
    assert (tmp_path / "exit-handlers-ran").read_text() == "yes"
