"""Axolotl 0.19 as a comparison: its virtual environment (created when missing) and its run config.

Axolotl lives in its own virtual environment, never in ft's (its pins differ; its licence keeps its
code out of ft): the benchmarks only run its ``axolotl`` command. The venv is named by
``--axolotl-python PATH`` or ``AXOLOTL_PYTHON`` (as in bench/preprocess), else ``--axolotl-venv DIR``
(default ``AXOLOTL_VENV``, else ``axolotl-venv`` in the bench cache, ``FT_BENCH_CACHE`` or ~/.cache/ft-bench). When it does not exist the benchmark creates it:
``python -m venv``, ``pip install torch==2.13.0`` first (the CPU build here), then
``axolotl==0.19.0`` with a constraints file that keeps that torch.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from bench._harness import DEFAULT_AXOLOTL_VENV

AXOLOTL_VERSION = "0.19.0"
TORCH_VERSION = "2.13.0"


def add_axolotl_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--axolotl-python", default=os.environ.get("AXOLOTL_PYTHON"),
                        help="python of an existing venv with axolotl==0.19.0 (or set AXOLOTL_PYTHON)")
    parser.add_argument("--axolotl-venv", type=Path, default=DEFAULT_AXOLOTL_VENV,
                        help="the venv to use, created when missing (default AXOLOTL_VENV or /tmp/axolotl-venv)")
    parser.add_argument("--print-venv-plan", action="store_true",
                        help="print the commands that create the Axolotl venv, then exit")


def venv_python(args: argparse.Namespace) -> Path:
    if args.axolotl_python:
        return Path(args.axolotl_python)
    return Path(args.axolotl_venv) / "bin" / "python"


def venv_plan(venv: Path, base_python: str | None = None) -> tuple[list[list[str]], str]:
    """The commands that create ``venv`` with Axolotl, in order, and the constraints file's text.
    The new venv is made from the interpreter ft's venv was made from (not from ft's venv)."""
    base_python = base_python or getattr(sys, "_base_executable", None) or sys.executable
    pip = str(venv / "bin" / "pip")
    constraints = str(venv / "ft-bench-constraints.txt")
    return ([
        [base_python, "-m", "venv", str(venv)],
        [pip, "install", "--upgrade", "pip"],
        [pip, "install", f"torch=={TORCH_VERSION}"],
        [pip, "install", "-c", constraints, f"axolotl=={AXOLOTL_VERSION}"],
    ], f"torch=={TORCH_VERSION}\n")


def ensure_venv(args: argparse.Namespace) -> Path:
    """The Axolotl venv's python; creates the venv first when it is missing (minutes, downloads)."""
    python = venv_python(args)
    if args.axolotl_python:
        if not python.exists():
            raise SystemExit(f"--axolotl-python/AXOLOTL_PYTHON {python} does not exist")
        return python
    venv = Path(args.axolotl_venv)
    commands, constraints = venv_plan(venv)
    if python.exists() and _has_axolotl(python):
        return python
    print(f"creating Axolotl {AXOLOTL_VERSION}'s venv at {venv} (several minutes):", flush=True)
    for index, command in enumerate(commands):
        print("  $ " + " ".join(command), flush=True)
        if index == 0 and python.exists():
            print("    (the venv exists without Axolotl: installing into it)", flush=True)
        else:
            subprocess.run(command, check=True)
        if index == 0:
            (venv / "ft-bench-constraints.txt").write_text(constraints)
    if not _has_axolotl(python):
        raise SystemExit(f"Axolotl did not install into {venv}")
    return python


def _has_axolotl(python: Path) -> bool:
    done = subprocess.run([str(python), "-c", "import importlib.metadata as m; print(m.version('axolotl'))"],
                          capture_output=True, text=True)
    return done.returncode == 0 and done.stdout.strip() == AXOLOTL_VERSION


def print_plan_and_exit(args: argparse.Namespace) -> None:
    commands, constraints = venv_plan(Path(args.axolotl_venv))
    print(f"# creates {args.axolotl_venv} when {args.axolotl_venv}/bin/python has no axolotl=={AXOLOTL_VERSION}")
    print(f"# constraints file {args.axolotl_venv}/ft-bench-constraints.txt: {constraints.strip()}")
    for command in commands:
        print(" ".join(command))
    raise SystemExit(0)


def axolotl_command(python: Path) -> list[str]:
    """The ``axolotl`` console script of the venv (what a user types)."""
    return [str(python.parent / "axolotl")]


def train_config(model: Path, rows: Path, out: Path, *, batch: int, steps: int, sequence_len: int, lr: float,
                 logging_steps: int, precision: str) -> dict[str, Any]:
    """An Axolotl config for the same full fine-tune ft runs: Alpaca rows, no packing, AdamW (torch),
    cosine schedule without warm-up, fp32 (or bf16), no evaluation, no mid-run checkpoints (the final
    model is saved, as ft saves it), rows kept in file order as ft's ``data.shuffle=false`` keeps them
    (the trainer's seeded sampler shuffles in both), and the benchmark's step timer as an Axolotl plugin. Its LoRA Triton kernels
    are switched off (no Triton on CPU; a full fine-tune has no LoRA anyway)."""
    return {
        "base_model": str(model),
        "tokenizer_type": "AutoTokenizer",
        "datasets": [{"path": str(rows), "ds_type": "json", "type": "alpaca"}],
        "dataset_prepared_path": str(out / "prepared"),
        "output_dir": str(out / "model"),
        "val_set_size": 0,
        "sequence_len": sequence_len,
        "sample_packing": False,
        "pad_to_sequence_len": False,
        "train_on_inputs": False,
        "micro_batch_size": batch,
        "gradient_accumulation_steps": 1,
        "num_epochs": 1,
        "max_steps": steps,
        "optimizer": "adamw_torch",
        "learning_rate": lr,
        "lr_scheduler": "cosine",
        "warmup_steps": 0,
        "weight_decay": 0.0,
        "max_grad_norm": 1.0,
        "bf16": precision == "bf16",
        "fp16": False,
        "tf32": False,
        "gradient_checkpointing": False,
        "flash_attention": False,
        "attn_implementation": "sdpa",
        "logging_steps": logging_steps,
        "save_strategy": "no",
        "save_only_model": False,
        "seed": 42,
        "shuffle_merged_datasets": False,  # file order, as ft's data.shuffle=false; the sampler shuffles
        "dataloader_num_workers": 0,
        "dataloader_pin_memory": precision == "bf16",
        "lora_mlp_kernel": False,
        "lora_qkv_kernel": False,
        "lora_o_kernel": False,
        "use_tensorboard": False,
        "plugins": ["bench._harness.axolotl_plugin.StepTimerPlugin"],
    }
