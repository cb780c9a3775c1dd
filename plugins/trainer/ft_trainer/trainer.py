"""The hook-aware trainer class every method builds from: ``ft_trainer_class(Base)``.

A subclass of ``transformers.Trainer`` or of a TRL trainer (the base is untouched: subclassing, not
patching) that asks the plugins first: each batch goes through ``process_batch``, the loss through the
``loss`` chain (the method's own loss innermost, loss kernels and wrappers around it; named parts logged
as ``loss/<name>``, reduced like the loss), batches through a plugin's ``batch_sampler``, and each
checkpoint is written into a staging folder and published whole (``ft.api.publish_checkpoint``).
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

from ft.api import CHECKPOINT_STAGING, LossCall, LossResult, RunContext, publish_checkpoint


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
            final_root = super()._get_output_dir(trial)
            self._ft_staging_root = str(Path(final_root) / CHECKPOINT_STAGING)
            try:
                super()._save_checkpoint(model, trial)
            finally:
                self._ft_staging_root = None
            publish_checkpoint(self, Path(final_root))

    FtTrainer.__name__ = FtTrainer.__qualname__ = f"Ft{base.__name__}"
    return FtTrainer
