"""What the launching `ft run` makes of its ranks' endings, and how a rank ends its part (fast, no ranks started)."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import torch.distributed as dist
from torch.distributed.elastic.multiprocessing.errors import ChildFailedError, ProcessFailure

from ft.distributed import leave_process_group
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


def test_a_recorded_one_line_error_wins_over_exit_codes(tmp_path):
    (tmp_path / "failure.rank1.json").write_text(json.dumps(
        {"rank": 1, "time": time.time(), "error": "row 7 of chat.jsonl has no assistant turn", "exit_code": 2}))
    failures = {0: silent_failure(0, -signal.SIGTERM, time.time()), 1: silent_failure(1, 2, time.time())}
    error = _failure(ChildFailedError("ft", failures), tmp_path)
    assert str(error) == "rank 1 failed: row 7 of chat.jsonl has no assistant turn"
    assert error.exit_code == 2


def test_a_rank_that_succeeded_leaves_its_process_group(tmp_path):
    """Left to interpreter exit, gloo's threads can abort a rank that finished well (SIGABRT after the run)."""
    store = dist.FileStore(str(Path(tmp_path) / "store"), 1)
    dist.init_process_group("gloo", store=store, rank=0, world_size=1)
    assert dist.is_initialized()
    leave_process_group()
    assert not dist.is_initialized()
    leave_process_group()  # nothing left to leave: no error
