"""Axolotl's training-loop keys as ft's ``trainer``, ``optim``, ``run`` and ``dist=ddp`` keys (ft-axolotl's
``axolotl_keys`` hook). Where Axolotl and ft differ in meaning the rule keeps Axolotl's and says so."""

from __future__ import annotations

from typing import Any

_SCHEDULERS = {"linear", "cosine", "cosine_with_restarts", "polynomial", "constant", "constant_with_warmup",
               "inverse_sqrt", "reduce_lr_on_plateau", "cosine_with_min_lr", "warmup_stable_decay"}


def _number(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ValueError(f"expected a number, got {value!r}") from None


def learning_rate(value: Any, config: dict[str, Any]) -> dict[str, Any]:
    """A string such as '2e-5' is read as a number (YAML reads it as text)."""
    return {"optim.lr": _number(value)}


def lr_scheduler(value: Any, config: dict[str, Any]) -> dict[str, Any]:
    """optim.scheduler (transformers' schedules; Axolotl's one_cycle and rex are refused)."""
    if value not in _SCHEDULERS:
        raise ValueError(f"ft's schedules are transformers' ({', '.join(sorted(_SCHEDULERS))}); "
                         f"Axolotl's own (one_cycle, rex) are not in ft")
    return {"optim.scheduler": value}


def warmup_ratio(value: Any, config: dict[str, Any]) -> dict[str, Any]:
    """A fraction of the training steps: ft's optim.warmup_steps takes a float in (0, 1) as that fraction."""
    ratio = _number(value)
    if not 0 <= ratio < 1:
        raise ValueError("expected a fraction in [0, 1)")
    return {"optim.warmup_steps": ratio if ratio > 0 else 0}


def warmup_steps(value: Any, config: dict[str, Any]) -> dict[str, Any]:
    """optim.warmup_steps."""
    steps = _number(value)
    return {"optim.warmup_steps": int(steps) if steps >= 1 or steps == 0 else steps}


def bf16(value: Any, config: dict[str, Any]) -> dict[str, Any] | str:
    """bf16 mixed precision on weights loaded in bf16, as Axolotl does (auto: where the device has bf16)."""
    if value in (True, "auto", "true"):
        return {"trainer.precision": "bf16", "model.dtype": "bfloat16"}
    if value is False or value == "false":
        return "no effect: bf16 off (fp32 unless fp16: true)"
    raise ValueError("expected true, false or auto")


def fp16(value: Any, config: dict[str, Any]) -> dict[str, Any] | str:
    """trainer.precision=fp16."""
    if value is True:
        return {"trainer.precision": "fp16"}
    return "no effect: fp16 off"


def tf32(value: Any, config: dict[str, Any]) -> str:
    """No effect: ft leaves torch's TF32 setting alone."""
    return ("no effect: ft leaves torch's TF32 matmul setting as it is (float32 matmuls on the GPUs that have TF32 "
            "may differ in the last bits)" if value else "no effect: TF32 off, as in ft")


def gradient_checkpointing(value: Any, config: dict[str, Any]) -> dict[str, Any]:
    """trainer.gradient_checkpointing (offload is refused)."""
    if value in (True, False):
        return {"trainer.gradient_checkpointing": bool(value)}
    raise ValueError(f"{value!r}: activation offloading is not in ft yet; use gradient_checkpointing: true")


def batch_size(value: Any, config: dict[str, Any]) -> dict[str, Any] | str:
    """Axolotl's batch_size (per process) sets gradient_accumulation_steps = batch_size / micro_batch_size."""
    if config.get("gradient_accumulation_steps"):
        return "no effect: gradient_accumulation_steps is given (Axolotl derives batch_size from it)"
    micro = int(config.get("micro_batch_size") or 1)
    if int(value) % micro:
        raise ValueError(f"batch_size {value} is not a multiple of micro_batch_size {micro}")
    return {"trainer.gradient_accumulation_steps": int(value) // micro}


def _per_epoch(what: str, key: str) -> Any:
    def rule(value: Any, config: dict[str, Any]) -> dict[str, Any] | str:
        count = int(value)
        if what == "eval" and not (config.get("val_set_size") or config.get("test_datasets")):
            return "no effect: no evaluation split (val_set_size is 0)"
        if config.get(key):
            return f"no effect: {key} is given"
        if count <= 1:
            return {f"trainer.{what}_steps": None}
        epochs = float(config.get("num_epochs") or 1)
        return {f"trainer.{what}_steps": round(1 / (count * epochs), 6)}
    rule.__doc__ = (f"N per epoch: trainer.{what}_steps as a fraction of training, 1 / (N x num_epochs) "
                    f"(null for once an epoch)")
    return rule


def save_strategy(value: Any, config: dict[str, Any]) -> dict[str, Any] | str:
    """steps, epoch: trainer.save_steps decides; best and no are refused."""
    if value == "steps":
        return "no effect: save_steps sets it"
    if value == "epoch":
        return {"trainer.save_steps": None}
    raise ValueError(f"{value!r}: ft checkpoints by steps or epochs (save_steps), and always keeps the newest")


def eval_strategy(value: Any, config: dict[str, Any]) -> dict[str, Any] | str:
    """steps, epoch: trainer.eval_steps decides; no: only without an evaluation split."""
    if value == "steps":
        return "no effect: eval_steps sets it"
    if value == "epoch":
        return {"trainer.eval_steps": None}
    if value == "no" and not (config.get("val_set_size") or config.get("test_datasets")):
        return "no effect: no evaluation split"
    if value == "no":
        raise ValueError("ft evaluates whenever there is an evaluation split; set val_set_size: 0 to have none")
    raise ValueError(f"{value!r}: expected steps, epoch or no")


def output_dir(value: Any, config: dict[str, Any]) -> dict[str, Any]:
    """ft never overwrites a run folder: each run is a new timestamped folder inside output_dir (run.root)."""
    return {"run.root": str(value)}


def ddp_timeout(value: Any, config: dict[str, Any]) -> dict[str, Any]:
    """Seconds in Axolotl, minutes in ft."""
    return {"dist.timeout_minutes": max(1, round(int(value) / 60))}


def adam_epsilon(value: Any, config: dict[str, Any]) -> dict[str, Any]:
    """optim.eps."""
    return {"optim.eps": _number(value)}


AXOLOTL_KEYS: dict[str, Any] = {
    "micro_batch_size": "trainer.micro_batch_size",
    "gradient_accumulation_steps": "trainer.gradient_accumulation_steps",
    "batch_size": batch_size,
    "num_epochs": "trainer.num_epochs",
    "max_steps": "trainer.max_steps",
    "learning_rate": learning_rate,
    "lr_scheduler": lr_scheduler,
    "optimizer": "optim.name",
    "warmup_ratio": warmup_ratio,
    "warmup_steps": warmup_steps,
    "weight_decay": "optim.weight_decay",
    "max_grad_norm": "optim.max_grad_norm",
    "adam_beta1": "optim.beta1",
    "adam_beta2": "optim.beta2",
    "adam_epsilon": adam_epsilon,
    "adam_eps": adam_epsilon,
    "bf16": bf16,
    "fp16": fp16,
    "tf32": tf32,
    "gradient_checkpointing": gradient_checkpointing,
    "gradient_checkpointing_kwargs": "no effect: reentrant or not, recomputation gives the same gradients",
    "logging_steps": "trainer.logging_steps",
    "save_steps": "trainer.save_steps",
    "saves_per_epoch": _per_epoch("save", "save_steps"),
    "save_total_limit": "trainer.save_total_limit",
    "save_strategy": save_strategy,
    "save_safetensors": "no effect: ft always writes safetensors",
    "save_only_model": "no effect: ft's checkpoints also hold the optimizer state (resumable); the model is the same",
    "eval_steps": "trainer.eval_steps",
    "evals_per_epoch": _per_epoch("eval", "eval_steps"),
    "eval_strategy": eval_strategy,
    "evaluation_strategy": eval_strategy,
    "eval_batch_size": "no effect: ft evaluates with trainer.micro_batch_size rows a pass (the same loss)",
    "output_dir": output_dir,
    "seed": "seed",
    "resume_from_checkpoint": "run.resume_from",
    "dataloader_num_workers": "trainer.dataloader_num_workers",
    "dataloader_pin_memory": "no effect: loading speed only",
    "dataloader_prefetch_factor": "no effect: loading speed only",
    "ddp_find_unused_parameters": "dist.find_unused_parameters",
    "ddp_timeout": ddp_timeout,
    "ddp_bucket_cap_mb": "dist.bucket_cap_mb",
    "loss_watchdog_threshold": "no effect: ft stops a run on a non-finite loss (ft-reliability), with no threshold",
    "loss_watchdog_patience": "no effect: ft stops a run on a non-finite loss (ft-reliability), with no threshold",
    "include_tokens_per_second": "no effect: ft logs throughput itself",
    "group_by_length": "only false: group_by_length (batches of similar lengths)",
    "torch_compile": "only false: torch_compile",
    "early_stopping_patience": "only false: early stopping",
}
