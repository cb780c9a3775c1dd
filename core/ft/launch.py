"""``ft run`` starting its own processes: ``dist.nproc_per_node`` / ``dist.nnodes`` without a launcher.

torchrun, ``accelerate launch``, Slurm's ``srun`` or Kubernetes normally start the processes and ft only
reads their environment (:mod:`ft.distributed`). For convenience ``ft run dist.nproc_per_node=2`` (and
``dist.nnodes=2 dist.node_rank=0|1 dist.rdzv_endpoint=host:port`` on each machine) runs the same job
under torch.distributed's elastic launcher, the engine behind torchrun, as a subprocess per rank:
``python -m ft run <the same overrides>``. The config was validated before anything starts, and a
rank that fails ends the whole job: its one-line error is what ``ft run`` prints and exits with.

Each rank writes what the launching process needs to report a failure into ``FT_LAUNCH_DIR``: the run
folder rank 0 claimed and, on failure, one JSON line per failed rank (the error line, the exit code).
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from ft.errors import ConfigError, FtUserError

#: Where a launched rank reports to the ``ft run`` that launched it (set by :func:`launch`).
LAUNCH_DIR_VARIABLE = "FT_LAUNCH_DIR"
#: Seconds a rank gets to exit after another rank failed, before it is killed.
SHUTDOWN_SECONDS = 5


class LaunchFailed(FtUserError):
    """A launched job ended with a failed rank; the message is that rank's one-line error."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def under_launcher() -> bool:
    """Whether a launcher started this process as one rank of a job (torchrun, srun + torchrun, accelerate)."""
    return "LOCAL_RANK" in os.environ or int(os.environ.get("WORLD_SIZE", "1")) > 1


def wants_processes(cfg: Any) -> bool:
    """Whether the config asks ``ft run`` to start several processes itself."""
    dist = getattr(cfg, "dist", None)
    return dist is not None and (dist.nproc_per_node > 1 or dist.nnodes > 1)


def planned_world_size(cfg: Any) -> int:
    """How many processes the job will have: the launcher's ``WORLD_SIZE`` under a launcher, else
    ``dist.nproc_per_node x dist.nnodes`` (what ``ft run`` will start). For checks at ``ft validate``."""
    if under_launcher():
        return int(os.environ.get("WORLD_SIZE", "1"))
    dist = getattr(cfg, "dist", None)
    return dist.nproc_per_node * dist.nnodes if dist is not None else 1


def check_launch_config(cfg: Any) -> None:
    """Cross-field rules of the ``dist`` launch keys, checked at ``ft validate``."""
    dist = getattr(cfg, "dist", None)
    if dist is None:
        return
    if dist.node_rank >= dist.nnodes:
        raise ConfigError(f"dist.node_rank={dist.node_rank} is not below dist.nnodes={dist.nnodes}; "
                          f"number the machines 0 .. {dist.nnodes - 1}")
    if dist.nnodes > 1 and not dist.rdzv_endpoint:
        raise ConfigError(f"dist.nnodes={dist.nnodes} needs dist.rdzv_endpoint=host:port, an address of machine 0 "
                          "that every machine can reach (the same value on each)")
    if dist.rdzv_endpoint and not re.fullmatch(r"\[?[\w.:-]+?\]?:\d{1,5}", str(dist.rdzv_endpoint)):
        raise ConfigError(f"dist.rdzv_endpoint={dist.rdzv_endpoint!r} is not host:port (for example 10.0.0.1:29400)")
    local = os.environ.get("LOCAL_WORLD_SIZE")
    if under_launcher() and dist.nproc_per_node > 1 and local and int(local) != dist.nproc_per_node:
        raise ConfigError(f"dist.nproc_per_node={dist.nproc_per_node}, but the launcher started {local} processes on this "
                          "machine; drop dist.nproc_per_node when a launcher (torchrun, srun) starts the processes")


def report_run_dir(run_dir: Path) -> None:
    """Rank 0 tells the launching ``ft run`` which folder it claimed."""
    where = os.environ.get(LAUNCH_DIR_VARIABLE)
    if where:
        (Path(where) / "run_dir").write_text(str(run_dir))


def report_failure(rank: int, exc: BaseException) -> None:
    """A failing rank records its one-line error for the launching ``ft run``."""
    where = os.environ.get(LAUNCH_DIR_VARIABLE)
    if not where:
        return
    line = str(exc) if isinstance(exc, FtUserError) else f"{type(exc).__name__}: {exc}"
    record = {"rank": rank, "time": time.time(), "error": line.splitlines()[0] if line else type(exc).__name__,
              "exit_code": getattr(exc, "exit_code", 1) if isinstance(exc, FtUserError) else 1}
    (Path(where) / f"failure.rank{rank}.json").write_text(json.dumps(record))


def failure_recorded(rank: int) -> bool:
    """Whether this rank already recorded its failure (the lifecycle does; an error before it does not)."""
    where = os.environ.get(LAUNCH_DIR_VARIABLE)
    return where is not None and (Path(where) / f"failure.rank{rank}.json").is_file()


def first_failure(launch_dir: Path) -> dict[str, Any] | None:
    """The failure that came first: the cause; later ones are other ranks losing their peer."""
    records = [json.loads(p.read_text()) for p in launch_dir.glob("failure.rank*.json")]
    return min(records, key=lambda r: r["time"]) if records else None


def ft_command(arguments: list[str], p_flags: list[str]) -> list[str]:
    """What each rank runs: ``python -m ft [-p ...] <arguments>`` (``run <overrides>``, ``resume RUN_DIR``)."""
    return ["-m", "ft", *p_flags, *arguments]


def launch_config(dist: Any, log_dir: Path) -> Any:
    """torch.distributed's ``LaunchConfig`` for the ``dist`` keys (torchrun's ``--standalone`` on one machine)."""
    from torch.distributed.elastic.multiprocessing import DefaultLogsSpecs, Std
    from torch.distributed.launcher.api import LaunchConfig

    # Rank 0 of each machine keeps the terminal; the others write to log files the failure line names.
    redirects = {local: Std.ALL for local in range(1, dist.nproc_per_node)}
    if dist.nnodes == 1 and not dist.rdzv_endpoint:
        endpoint, run_id, configs = "localhost:0", str(uuid.uuid4()), {}
    else:
        endpoint, run_id, configs = dist.rdzv_endpoint, str(dist.rdzv_id), {"is_host": dist.node_rank == 0}
    return LaunchConfig(
        min_nodes=dist.nnodes, max_nodes=dist.nnodes, nproc_per_node=dist.nproc_per_node,
        logs_specs=DefaultLogsSpecs(log_dir=str(log_dir), redirects=redirects),
        run_id=run_id, rdzv_endpoint=endpoint, rdzv_backend="c10d", rdzv_configs=configs,
        rdzv_timeout=int(dist.timeout_minutes * 60), max_restarts=0, monitor_interval=0.2,
        start_method="spawn", shutdown_timeout=SHUTDOWN_SECONDS)


def launch(cfg: Any, arguments: list[str], p_flags: list[str]) -> Path | None:
    """Run ``ft <arguments>`` as ``dist.nproc_per_node`` processes on this machine (one node of ``dist.nnodes``).

    Returns rank 0's run folder (``None`` on a machine without rank 0). A failed rank raises
    :class:`LaunchFailed` with that rank's one-line error, after every other rank has stopped; the run
    folder is marked failed in its ``run.json``.
    """
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import elastic_launch

    dist = cfg.dist
    launch_dir = Path(tempfile.mkdtemp(prefix="ft-launch-"))
    previous = os.environ.get(LAUNCH_DIR_VARIABLE)
    os.environ[LAUNCH_DIR_VARIABLE] = str(launch_dir)
    nodes = f" on machine {dist.node_rank} of {dist.nnodes}" if dist.nnodes > 1 else ""
    print(f"[ft] starting {dist.nproc_per_node} processes{nodes} (torch.distributed elastic launcher)", file=sys.stderr)
    elastic_log = logging.getLogger("torch.distributed.elastic")
    level = elastic_log.level
    elastic_log.setLevel(logging.CRITICAL)  # its "closing signal"/"failed" records: ft says it in one line
    try:
        elastic_launch(launch_config(dist, launch_dir / "logs"), sys.executable)(*ft_command(arguments, p_flags))
    except ChildFailedError as exc:
        print(file=sys.stderr)  # end rank 0's progress bar line: the error gets a line of its own
        raise _failure(exc, launch_dir) from None  # the launch folder stays: the failed rank's output is there
    finally:
        elastic_log.setLevel(level)
        if previous is None:
            os.environ.pop(LAUNCH_DIR_VARIABLE, None)
        else:
            os.environ[LAUNCH_DIR_VARIABLE] = previous
    marker = launch_dir / "run_dir"
    claimed = Path(marker.read_text()) if marker.is_file() else None
    shutil.rmtree(launch_dir, ignore_errors=True)
    return claimed


def _failure(exc: Any, launch_dir: Path) -> LaunchFailed:
    """The one line a failed launch ends with, and the run folder marked failed."""
    record = first_failure(launch_dir)
    silent = record is None
    if record is None:  # killed without a word (a signal, out of memory, a crash at exit)
        # The first to end is the cause; the launcher's SIGTERM to the others is recorded after it.
        rank, failure = min(exc.failures.items(), key=lambda item: item[1].timestamp)
        record = {"rank": rank, "exit_code": 1,
                  "error": f"exited with code {failure.exitcode}" + (f" ({failure.signal_name()})" if failure.exitcode < 0 else "")}
    logs = sorted(launch_dir.glob(f"logs/**/{record['rank']}/*.log")) if record["rank"] else []
    said = last_words(logs[0].parent / "stderr.log") if logs and silent else ""
    last_line = f"; its last line: {said}" if said else ""
    where = f" (its output: {logs[0].parent})" if logs else ""
    message = f"rank {record['rank']} failed: {record['error']}{last_line}{where}"
    marker = launch_dir / "run_dir"
    if marker.is_file():
        mark_failed(Path(marker.read_text()), message)
    return LaunchFailed(message, int(record.get("exit_code") or 1))


def last_words(stderr_log: Path, limit: int = 200) -> str:
    """The last line a rank wrote to stderr before it died without a recorded error (a signal, a crash in
    C++ at exit: "terminate called ..."), so the failure line says why without opening the log."""
    try:
        text = stderr_log.read_text(errors="replace")
    except OSError:
        return ""
    lines = [line.strip() for line in text.splitlines() if line.strip()]  # splits a progress bar's \r redraws too
    if not lines:
        return ""
    last = lines[-1]
    return last if len(last) <= limit else last[: limit - 3] + "..."


def mark_failed(run_dir: Path, message: str) -> None:
    """Record in ``run.json`` that the run failed, and why (a failed run, never mistaken for a finished one)."""
    record_path = run_dir / "run.json"
    if not record_path.is_file():
        return
    record = json.loads(record_path.read_text())
    record.update(status="failed", error=message)
    partial = record_path.with_suffix(".json.partial")
    partial.write_text(json.dumps(record, indent=2) + "\n")
    partial.replace(record_path)


def run_job(job: Any, run_dir: Path | None, p_flags: list[str], overrides: list[str] | None = None) -> dict[str, Any]:
    """Run one validated job: in this process, or, when its config asks for several processes and no
    launcher started this one, as a launched job (a sweep's job too: it launches its own processes).
    Returns the final metrics (rank 0's ``summary.json`` for a launched job)."""
    from ft import lifecycle

    if not wants_processes(job.cfg) or under_launcher():
        return lifecycle.run(job, run_dir)
    arguments = list(overrides if overrides is not None else job.composed.overrides)
    if run_dir is not None:
        arguments = [a for a in arguments if not a.startswith("hydra.run.dir=")] + [f"hydra.run.dir={run_dir}"]
    claimed = launch(job.cfg, ["run", *arguments], p_flags)
    summary = claimed / "summary.json" if claimed is not None else None
    return json.loads(summary.read_text()) if summary is not None and summary.is_file() else {}
