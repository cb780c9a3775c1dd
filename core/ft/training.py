"""The base training arguments: the kernel's ``trainer``, ``optim``, ``run`` and ``dist`` sections as
``transformers.TrainingArguments`` keywords, which the ``training_args`` hook's contributions extend."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ft.context import RunContext
from ft.distributed import ranks_are_cpu_processes


def base_training_args(ctx: RunContext) -> dict[str, Any]:
    """``TrainingArguments`` keywords from the ``trainer``, ``optim`` and ``run`` config sections."""
    cfg = ctx.cfg
    trainer, optim = cfg.trainer, cfg.optim
    has_eval = ctx.datasets is not None and ctx.datasets.eval is not None
    eval_strategy = ("steps" if trainer.eval_steps else "epoch") if has_eval else "no"
    warmup = optim.warmup_steps
    args: dict[str, Any] = {
        "output_dir": str(Path(ctx.run_dir) / "checkpoints"),
        "per_device_train_batch_size": trainer.micro_batch_size,
        "per_device_eval_batch_size": trainer.micro_batch_size,
        "gradient_accumulation_steps": trainer.gradient_accumulation_steps,
        "num_train_epochs": trainer.num_epochs,
        "max_steps": trainer.max_steps,
        "logging_steps": trainer.logging_steps,
        "logging_first_step": True,
        "eval_strategy": eval_strategy,
        "save_strategy": "steps" if trainer.save_steps else "epoch",
        "save_total_limit": trainer.save_total_limit,
        "learning_rate": optim.lr,
        "weight_decay": optim.weight_decay,
        "adam_beta1": optim.beta1,
        "adam_beta2": optim.beta2,
        "adam_epsilon": optim.eps,
        "max_grad_norm": optim.max_grad_norm,
        "lr_scheduler_type": optim.scheduler,
        "warmup_steps": int(warmup) if warmup >= 1 and float(warmup).is_integer() else warmup,
        "optim": optim.name,
        "bf16": trainer.precision == "bf16",
        "fp16": trainer.precision == "fp16",
        "dataloader_num_workers": trainer.dataloader_num_workers,
        "report_to": list(trainer.report_to) or "none",
        "seed": cfg.seed,
        "data_seed": cfg.seed,
        "remove_unused_columns": False,
        "disable_tqdm": not ctx.is_main,
        "dataloader_pin_memory": _has_accelerator(),
    }
    if ranks_are_cpu_processes(ctx.ranks):
        args["use_cpu"] = True  # several CPU processes: DDP over gloo (accelerate needs to be told)
    elif trainer.precision == "bf16" and not _has_any_accelerator():
        args["use_cpu"] = True  # bf16 autocast on the CPU: transformers refuses bf16 without a GPU unless told
    dist = getattr(cfg, "dist", None)
    if dist is not None:
        args["ddp_timeout"] = int(dist.timeout_minutes * 60)
        if ctx.choices.get("dist") == "ddp":
            args["ddp_find_unused_parameters"] = dist.find_unused_parameters
            if dist.bucket_cap_mb is not None:
                args["ddp_bucket_cap_mb"] = dist.bucket_cap_mb
    if trainer.gradient_checkpointing:
        args["gradient_checkpointing"] = True
    if trainer.eval_steps:
        args["eval_steps"] = trainer.eval_steps
    if trainer.save_steps:
        args["save_steps"] = trainer.save_steps
    return args


def _has_accelerator() -> bool:
    import torch

    return torch.cuda.is_available()


def _has_any_accelerator() -> bool:
    """A CUDA, Apple (MPS) or Intel (XPU) device: transformers trains there unless ``use_cpu`` is set."""
    import torch

    xpu = getattr(torch, "xpu", None)
    return torch.cuda.is_available() or torch.backends.mps.is_available() or bool(xpu and xpu.is_available())
