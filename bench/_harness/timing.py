"""A ``transformers.TrainerCallback`` that times training steps, shared by every side of a benchmark.

The same class is given to ft (through its ``callbacks`` hook), to a plain ``transformers.Trainer``
and to Axolotl (through its plugin API), so every side is timed by identical code. It imports only
the standard library and transformers, so it also loads in Axolotl's separate virtual environment.

It writes one JSON file, named by the environment variable ``FT_BENCH_TIMING``, when training ends:
``{"train_begin_unix", "first_step_end_unix", "step_s": [...], "step_cpu_s": [...], "steps",
"cuda_peak_mb"}``, where ``step_s[i]`` is the wall time between the ends of step ``i`` and step
``i + 1`` (data loading, forward, backward, optimizer, logging and callbacks: everything a step
costs) and ``step_cpu_s[i]`` the CPU time the whole process used meanwhile (all threads), which
other jobs on a shared machine disturb less than wall time.
"""

from __future__ import annotations

import json
import os
import time

from transformers import TrainerCallback

ENV = "FT_BENCH_TIMING"


class StepTimer(TrainerCallback):
    """Record the wall time of every step and the moment the first one ended."""

    def __init__(self, path: str | None = None) -> None:
        self.path = path or os.environ.get(ENV)
        self.train_begin = 0.0
        self.first_step_end = 0.0
        self.last = 0.0
        self.last_cpu = 0.0
        self.steps: list[float] = []
        self.steps_cpu: list[float] = []

    def on_train_begin(self, args, state, control, **kwargs):  # noqa: ANN001
        self.train_begin = time.time()
        self._reset_cuda_peak()

    def on_step_end(self, args, state, control, **kwargs):  # noqa: ANN001
        self._sync()
        now, cpu = time.perf_counter(), time.process_time()
        if not self.first_step_end:
            self.first_step_end = time.time()
        elif self.last:
            self.steps.append(now - self.last)
            self.steps_cpu.append(cpu - self.last_cpu)
        self.last, self.last_cpu = now, cpu

    def on_train_end(self, args, state, control, **kwargs):  # noqa: ANN001
        if not self.path:
            return
        record = {"train_begin_unix": self.train_begin, "first_step_end_unix": self.first_step_end,
                  "step_s": self.steps, "step_cpu_s": self.steps_cpu,
                  "steps": state.global_step, "cuda_peak_mb": self._cuda_peak_mb()}
        with open(self.path, "w", encoding="utf-8") as handle:
            json.dump(record, handle)

    @staticmethod
    def _sync() -> None:
        """Wait for queued GPU work so a step's time is the step's, not the next one's."""
        import torch

        if torch.cuda.is_available() and torch.cuda.is_initialized():
            torch.cuda.synchronize()

    @staticmethod
    def _reset_cuda_peak() -> None:
        import torch

        if torch.cuda.is_available() and torch.cuda.is_initialized():
            torch.cuda.reset_peak_memory_stats()

    @staticmethod
    def _cuda_peak_mb() -> float | None:
        import torch

        if torch.cuda.is_available() and torch.cuda.is_initialized():
            return round(torch.cuda.max_memory_allocated() / 2**20, 1)
        return None
