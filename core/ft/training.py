"""Trainer plumbing shared by every method: the hook-aware trainer class and training arguments.

Method plugins build their trainer from :func:`ft_trainer_class` so that the ``process_batch``,
``loss`` and ``batch_sampler`` hooks work the same on top of
``transformers.Trainer`` and TRL's trainers alike. This is subclassing, not patching: the base class
is untouched.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

from ft.context import LossCall, LossResult, RunContext
from ft.distributed import ranks_are_cpu_processes


@functools.cache
def ft_trainer_class(base: type) -> type:
    """A subclass of ``base`` (a ``transformers.Trainer``) whose batches, loss and batching are asked of the
    plugins first. Pass ``ft_ctx=ctx`` to its constructor."""

    class FtTrainer(base):
        def __init__(self, *args: Any, ft_ctx: RunContext | None = None, **kwargs: Any) -> None:
            self.ft_ctx = ft_ctx
            self._ft_loss_parts: dict[str, float] = {}
            self._ft_part_steps: set[int] = set()
            self._ft_staging_root: str | None = None
            super().__init__(*args, **kwargs)

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            if self.ft_ctx is None:
                return super().compute_loss(model, inputs, return_outputs=return_outputs,
                                            num_items_in_batch=num_items_in_batch)
            pm = self.ft_ctx.pm
            pm.hook.process_batch(ctx=self.ft_ctx, batch=inputs, training=model.training)

            def method_loss() -> LossResult:
                out = super(FtTrainer, self).compute_loss(model, inputs, return_outputs=return_outputs or call.need_outputs,
                                                          num_items_in_batch=num_items_in_batch)
                return LossResult(*out) if isinstance(out, tuple) else LossResult(out)

            call = LossCall(model=model, inputs=inputs, training=model.training, return_outputs=return_outputs,
                            method_loss=method_loss, **self._ft_token_normalisation(num_items_in_batch))
            result = (self.ft_ctx.loss_hook or pm.hook.loss)(ctx=self.ft_ctx, call=call)
            if model.training and result.parts:
                self._ft_add_parts(result.parts, num_items_in_batch)
            return (result.loss, result.outputs) if return_outputs else result.loss

        def _ft_add_parts(self, parts: dict[str, Any], num_items_in_batch: Any) -> None:
            """Add a training batch's loss parts the way ``training_step`` adds its loss to the logged one:
            divided by the accumulation steps unless the loss is already a share of the step's tokens, summed
            over the step's micro-batches; :meth:`log` divides by the optimizer steps since the last log."""
            scaled = getattr(self, "loss_is_scaled_for_ga", None)
            if scaled is None:
                scaled = bool(self.model_accepts_loss_kwargs and num_items_in_batch is not None) or \
                    self.compute_loss_func is not None
            divisor = 1 if scaled else self.current_gradient_accumulation_steps
            for name, value in parts.items():
                total = self._ft_loss_parts.get(name, 0.0)
                self._ft_loss_parts[name] = total + float(value.detach() if hasattr(value, "detach") else value) / divisor
            self._ft_part_steps.add(self.state.global_step)

        def _ft_token_normalisation(self, num_items_in_batch: Any) -> dict[str, Any]:
            """How transformers normalises a token loss here (``Trainer.compute_loss``), for loss kernels:
            the divisor reaches the model only when it takes loss keywords (else the trainer divides a
            per-batch mean by the accumulation steps), and the result is multiplied by the number of
            ranks when tokens are averaged across devices."""
            takes_it = bool(self.model_accepts_loss_kwargs or self.compute_loss_func)
            num_items = num_items_in_batch if takes_it else None
            scale = 1.0
            if self.args.average_tokens_across_devices and takes_it and num_items is not None:
                tp_size = self.get_tp_size() if hasattr(self, "get_tp_size") else 1
                scale = float(self.accelerator.num_processes // tp_size if self.args.n_gpu <= 1 else self.args.n_gpu)
            return {"num_items_in_batch": num_items, "token_loss_scale": scale}

        def log(self, logs: dict[str, float], *args: Any, **kwargs: Any) -> None:
            """Add each named loss part (``loss/<name>``) to training logs, reduced like ``loss``: per optimizer
            step the sum over its micro-batches, averaged over the steps since the last log."""
            if "loss" in logs and self._ft_loss_parts:
                steps = max(len(self._ft_part_steps), 1)
                for name, total in self._ft_loss_parts.items():
                    logs[f"loss/{name}"] = round(total / steps, 6)
                self._ft_loss_parts.clear()
                self._ft_part_steps.clear()
            super().log(logs, *args, **kwargs)

        def get_train_dataloader(self):
            batching = self.ft_ctx.batching.get("train") if self.ft_ctx is not None else None
            if batching is None:
                return super().get_train_dataloader()
            return self._ft_dataloader(batching, self.train_dataset, is_training=True)

        def get_eval_dataloader(self, eval_dataset: Any = None):
            batching = self.ft_ctx.batching.get("eval") if self.ft_ctx is not None else None
            if batching is None or (eval_dataset is not None and eval_dataset is not self.eval_dataset):
                return super().get_eval_dataloader(eval_dataset)
            return self._ft_dataloader(batching, self.eval_dataset, is_training=False)

        def _ft_dataloader(self, batching: Any, dataset: Any, is_training: bool):
            """A DataLoader over a plugin's batch sampler (see the ``batch_sampler`` hook)."""
            from torch.utils.data import DataLoader

            params: dict[str, Any] = {
                "batch_sampler": batching.sampler,
                "collate_fn": self.data_collator,
                "num_workers": self.args.dataloader_num_workers,
                "pin_memory": self.args.dataloader_pin_memory,
                "persistent_workers": self.args.dataloader_persistent_workers,
            }
            if self.args.dataloader_num_workers > 0:
                params["prefetch_factor"] = self.args.dataloader_prefetch_factor
                if is_training:
                    from transformers.trainer_utils import seed_worker

                    params["worker_init_fn"] = functools.partial(
                        seed_worker, num_workers=self.args.dataloader_num_workers, rank=self.args.process_index)
            loader = self.accelerator.prepare(
                DataLoader(batching.dataset if batching.dataset is not None else dataset, **params))
            # The sampler already gives each rank its own batches: make accelerate's shard wrapper a
            # pass-through instead of sharding a second time (and silently dropping rows).
            wrapper = getattr(loader, "batch_sampler", None)
            if wrapper is not None and getattr(wrapper, "batch_sampler", None) is batching.sampler:
                wrapper.num_processes = 1
                wrapper.process_index = 0
            return loader

        def _get_output_dir(self, trial: Any) -> str:
            staging = getattr(self, "_ft_staging_root", None)
            return staging if staging is not None else super()._get_output_dir(trial)

        def _save_checkpoint(self, model: Any, trial: Any) -> None:
            """Write each checkpoint into a staging folder, mark it complete, then rename it into place
            (and only then drop old ones), so a crash never leaves a checkpoint that looks whole."""
            from ft.checkpoints import STAGING, publish_checkpoint

            final_root = super()._get_output_dir(trial)
            self._ft_staging_root = str(Path(final_root) / STAGING)
            try:
                super()._save_checkpoint(model, trial)
            finally:
                self._ft_staging_root = None
            publish_checkpoint(self, Path(final_root))

    FtTrainer.__name__ = FtTrainer.__qualname__ = f"Ft{base.__name__}"
    return FtTrainer


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
