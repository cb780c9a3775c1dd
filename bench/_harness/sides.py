"""The training commands the benchmarks time: ``ft run`` and ``axolotl train``, same workload.

Both are what a user types (ft's console command through :mod:`bench._harness.ft_launch`, which only
adds the step-timer plugin; Axolotl's ``axolotl train CONFIG`` with its default accelerate launcher),
each writing into its own fresh folder so that neither finds a cache of the other's or its own.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import yaml

from bench._harness import REPO, run_timed
from bench._harness.axolotl import axolotl_command, train_config

LR = 2e-5


def ft_train_command(model: Path, rows: Path, *, batch: int, steps: int, sequence_len: int, logging_steps: int,
                     precision: str, load_bf16: bool = True, extra: tuple[str, ...] = ()) -> list[str]:
    """``ft run`` on Alpaca rows in file order (the trainer's sampler shuffles, as everywhere). With
    bf16 and ``load_bf16`` the weights are loaded in bf16, as Axolotl's ``bf16: true`` loads them."""
    dtype = ["model.dtype=bfloat16"] if precision == "bf16" and load_bf16 else []
    return [sys.executable, "-m", "bench._harness.ft_launch", "run", "data=alpaca", f"data.path={rows}",
            "data.shuffle=false", f"data.sequence_len={sequence_len}", f"model.name_or_path={model}", *dtype,
            f"trainer.micro_batch_size={batch}", f"trainer.max_steps={steps}", f"trainer.logging_steps={logging_steps}",
            f"trainer.precision={precision}", f"optim.lr={LR}", "optim.warmup_steps=0", "seed=42", *extra]


def fresh_caches(env: dict[str, str], workdir: Path) -> dict[str, str]:
    """Caches inside ``workdir``: every run reads and tokenizes its data itself."""
    return {**env, "FT_CACHE_DIR": str(workdir / "ft-cache"), "HF_HOME": str(workdir / "hf"),
            "HF_DATASETS_CACHE": str(workdir / "hf" / "datasets")}


def run_ft(workdir: Path, model: Path, rows: Path, env: dict[str, str], extra: tuple[str, ...] = (),
           **kwargs: Any) -> dict[str, Any]:
    """One ``ft run`` in a fresh folder with fresh caches."""
    workdir.mkdir(parents=True)
    cmd = ft_train_command(model, rows, **kwargs, extra=(f"run.root={workdir / 'runs'}", *extra))
    return run_timed(cmd, env=fresh_caches(env, workdir), cwd=REPO, timing_file=True)


def run_axolotl(python: Path, workdir: Path, model: Path, rows: Path, env: dict[str, str], *, batch: int, steps: int,
                sequence_len: int, logging_steps: int, precision: str) -> dict[str, Any]:
    """One ``axolotl train`` in a fresh folder with fresh caches; like ft's default, it leaves a
    checkpoint of the last step (model, optimizer, scheduler) and the final model. The venv's bin
    folder goes first on PATH, as an activated venv would (``axolotl train`` execs ``accelerate``)."""
    workdir.mkdir(parents=True)
    config = train_config(model, rows, workdir, batch=batch, steps=steps, sequence_len=sequence_len, lr=LR,
                          logging_steps=logging_steps, precision=precision)
    config.update({"save_strategy": "steps", "save_steps": steps})
    config_path = workdir / "axolotl.yml"
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    bin_dir = str(python.parent)
    axolotl_env = {**fresh_caches(env, workdir), "PATH": bin_dir + os.pathsep + env.get("PATH", "")}
    return run_timed([*axolotl_command(python), "train", str(config_path)], env=axolotl_env, cwd=workdir,
                     timing_file=True)
