"""The launcher contract ft reads, and the few collective steps the lifecycle needs.

ft never spawns processes here: torchrun, ``accelerate launch``, a framework's own launcher, Slurm or
Kubernetes start them and set ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK`` and ``MASTER_ADDR``/``MASTER_PORT``.
With more than one process, the process group is initialised through accelerate (gloo on CPU, NCCL on
GPUs), the same state transformers' Trainer then uses. On a machine without an accelerator accelerate
must be told that the ranks are CPU processes (``cpu=True``, the Trainer's ``use_cpu``), or every rank
would train alone as "process zero".
"""

from __future__ import annotations

import atexit
import contextlib
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, NoReturn


@dataclass(frozen=True)
class Ranks:
    """This process's place in the job."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def ranks_from_env() -> Ranks:
    """The ranks the launcher set (one process when it set none)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    return Ranks(rank=rank, world_size=world, local_rank=int(os.environ.get("LOCAL_RANK", str(rank))))


def ranks_are_cpu_processes(ranks: Ranks) -> bool:
    """Several ranks and no accelerator: data parallel over CPU processes (gloo)."""
    if ranks.world_size <= 1:
        return False
    import torch

    return not torch.cuda.is_available()


def init_process_group(ranks: Ranks, timeout_minutes: float | None = None) -> None:
    """Join the launcher's process group (through accelerate's ``PartialState``) when there are several ranks.

    ``timeout_minutes`` bounds how long a collective waits for a rank that went silent."""
    if ranks.world_size <= 1:
        return
    from datetime import timedelta

    from accelerate import PartialState

    extra = {"timeout": timedelta(minutes=timeout_minutes)} if timeout_minutes else {}
    PartialState(cpu=ranks_are_cpu_processes(ranks), **extra)


def exit_process(code: int) -> NoReturn:
    """End this process with ``code``; a rank of a process group ends without native teardown.

    Destroying the group does not stop gloo's threads (they live until the group's last reference goes),
    so they run into interpreter shutdown: a worker freeing a finished collective needs the GIL then, and
    either aborts the process ("terminate called without an active exception", SIGABRT) or deadlocks the
    shutdown, after a run that finished well. So a rank that succeeded first waits for every rank (no peer
    is then inside a collective when its connections close), then runs Python's exit handlers (logging,
    experiment loggers, temporary folders), flushes its output and leaves with ``os._exit``: nothing native is torn
    down while threads still run. Without a process group this is a plain ``sys.exit``.
    """
    if "torch" in sys.modules:  # a command that never touched torch joined no group
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            if code == 0:  # after a failure the launcher stops the others: nobody would come to the barrier
                dist.barrier()
            atexit._run_exitfuncs()  # what interpreter exit would run, without the native part
            for stream in (sys.stdout, sys.stderr):
                with contextlib.suppress(Exception):
                    stream.flush()
            os._exit(code)
    sys.exit(code)


def broadcast_from_main(value: Any, ranks: Ranks) -> Any:
    """Rank 0's ``value`` on every rank (the value other ranks pass is ignored)."""
    if ranks.world_size <= 1:
        return value
    import torch.distributed as dist

    box = [value if ranks.is_main else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def any_rank(flag: bool, ranks: Ranks) -> bool:
    """True on every rank when ``flag`` is true on any rank (one small all-reduce)."""
    if ranks.world_size <= 1:
        return flag
    import torch
    import torch.distributed as dist

    value = torch.tensor([1 if flag else 0])
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())


def barrier(ranks: Ranks) -> None:
    """Wait for every rank."""
    if ranks.world_size > 1:
        import torch.distributed as dist

        dist.barrier()


@contextlib.contextmanager
def main_process_first(ranks: Ranks) -> Iterator[None]:
    """Rank 0 runs the block first (tokenizing into the cache); the others then run it (reading the cache)."""
    if not ranks.is_main:
        barrier(ranks)
    try:
        yield
    finally:
        if ranks.is_main:
            barrier(ranks)


@contextlib.contextmanager
def gathered_weights(ctx: Any, model: Any = None) -> Iterator[None]:
    """Every parameter whole on every rank for the block, for forward passes outside training (scoring,
    checks, samples) of ``model`` (default ``ctx.model``): the context managers the active plugins'
    ``gather_weights`` hook returns are entered (a sharding engine gathers its partitions; collective:
    every rank enters the block together); with none, nothing to do."""
    with contextlib.ExitStack() as stack:
        for manager in ctx.pm.hook.gather_weights(ctx=ctx, model=ctx.model if model is None else model):
            if manager is not None:
                stack.enter_context(manager)
        yield
