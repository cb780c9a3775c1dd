"""The diffusion trainer: ``transformers.Trainer`` whose loss is the masked diffusion loss.

Wrapped by ``ft_trainer.api.ft_trainer_class``, so its loss is the method's own in ft's loss chain (wrappers may
add terms; token-loss kernels are refused: this is not a next-token loss). It logs, next to the loss,
``masked_accuracy`` (predicted == original on masked tokens) and ``mask_ratio`` (masked / noisable
tokens), summed since the last log (``eval_`` versions on evaluation).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from ft.api import RunContext, gathered_weights


@dataclass(frozen=True)
class Settings:
    """What the loss needs, resolved once (``mask_id`` comes from the tokenizer)."""

    mask_id: int
    eps: float
    schedule: str
    low: float
    high: float
    shift: bool
    importance_weighting: bool
    normalization: str
    causal: bool
    eos_fill: int | None = None  # the end-of-sequence id that fills right padding in training, or None

    @classmethod
    def from_config(cls, method: Any, mask_id: int, eos_id: int | None = None) -> Settings:
        return cls(mask_id, method.eps, method.noise_schedule, method.min_mask_ratio, method.max_mask_ratio,
                   method.shift_logits, method.importance_weighting, method.loss_normalization,
                   method.attention == "causal", eos_id if method.eos_fill else None)


def fill_with_eos(inputs: dict[str, Any], eos_id: int) -> dict[str, Any]:
    """Right padding of rows with an answer becomes end-of-sequence tokens that are attended and trained
    (LLaDA's SFT): the model learns where an answer ends, which the sampler needs, since it fills a fixed
    number of positions. Rows without padding (packed, or the longest) are unchanged."""
    import torch

    attention = inputs.get("attention_mask")
    if attention is None or bool(attention.all()):
        return inputs
    labels = inputs["labels"]
    real = attention.bool()
    last_real = real.long().cumsum(-1).argmax(-1, keepdim=True)  # index of each row's last real token
    after = torch.arange(real.shape[1], device=real.device)[None] > last_real
    fill = after & (labels != -100).any(-1, keepdim=True)
    return {**inputs, "input_ids": torch.where(fill, eos_id, inputs["input_ids"]),
            "labels": torch.where(fill, eos_id, labels), "attention_mask": (real | fill).long()}


def first_trained_column(labels: Any, shift: bool) -> int:
    """The first column whose logits the loss needs: the first noisable one (one earlier with ``shift``);
    0 when nothing is noisable or the text is trained from its start (pretraining, packed rows)."""
    from ft_diffusion.noise import IGNORE_INDEX

    columns = (labels != IGNORE_INDEX).any(0)
    if not bool(columns.any()):
        return 0
    return max(int(columns.int().argmax()) - (1 if shift else 0), 0)


def diffusion_step(model: Any, inputs: dict[str, Any], settings: Settings, generator: Any = None,
                   t: Any = None) -> tuple[Any, Any, dict[str, Any]]:
    """Noise a batch, run the model with diffusion attention, return (loss, logits, stats).

    The head runs on the columns from :func:`first_trained_column` on (a prompt's columns are never
    predicted: SFT keeps it clean), so ``logits`` covers those last columns; the loss is the same as with
    every column's logits."""
    from ft_diffusion.attention import forward
    from ft_diffusion.noise import diffusion_loss, noise_batch

    if settings.eos_fill is not None:
        inputs = fill_with_eos(inputs, settings.eos_fill)
    input_ids, labels = inputs["input_ids"], inputs["labels"]
    position_ids = inputs.get("position_ids")
    noised = noise_batch(input_ids, labels, settings.mask_id, settings.eps, settings.schedule, settings.low,
                         settings.high, generator=generator, t=t, position_ids=position_ids)
    first = first_trained_column(labels, settings.shift)
    logits = forward(model, noised.input_ids, inputs.get("attention_mask"), position_ids, settings.causal,
                     last=input_ids.shape[1] - first)
    loss, stats = diffusion_loss(logits, input_ids[:, first:], noised.columns_from(first), settings.shift,
                                 settings.importance_weighting, settings.normalization)
    return loss, logits, stats


def trainer_class() -> type:
    """``DiffusionTrainer``, built on first use (imports transformers)."""
    from transformers import Trainer

    class DiffusionTrainer(Trainer):
        def __init__(self, *args: Any, diffusion: Settings, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.diffusion = diffusion
            # The loss is normalised per batch: let the trainer divide by the accumulation steps.
            self.model_accepts_loss_kwargs = False
            self._diffusion_stats = {"train": [0, 0, 0], "eval": [0, 0, 0]}

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):  # noqa: ANN001
            loss, logits, stats = diffusion_step(model, inputs, self.diffusion)
            totals = self._diffusion_stats["train" if model.training else "eval"]
            totals[0] += int(stats["masked"])
            totals[1] += int(stats["hits"])
            totals[2] += int(stats["noisable"])
            return (loss, {"logits": logits}) if return_outputs else loss

        def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):  # noqa: ANN001
            import torch

            inputs = self._prepare_inputs(inputs)
            with torch.no_grad():
                loss = self.compute_loss(model, inputs)
            return loss.detach(), None, None

        def log(self, logs: dict[str, float], *args: Any, **kwargs: Any) -> None:
            mode, prefix = ("eval", "eval_") if any(k.startswith("eval_") for k in logs) else ("train", "")
            masked, hits, noisable = self._diffusion_stats[mode]
            if noisable:
                logs[f"{prefix}masked_accuracy"] = round(hits / max(masked, 1), 6)
                logs[f"{prefix}mask_ratio"] = round(masked / noisable, 6)
            self._diffusion_stats[mode] = [0, 0, 0]
            super().log(logs, *args, **kwargs)

    return DiffusionTrainer


def pad_rows(rows: list[dict[str, Any]], pad_id: int) -> dict[str, Any]:
    """A right-padded batch of tokenized rows (whatever collator training uses, packing included)."""
    import torch

    length = max(len(r["input_ids"]) for r in rows)
    batch = {"input_ids": torch.full((len(rows), length), pad_id, dtype=torch.long),
             "labels": torch.full((len(rows), length), -100, dtype=torch.long),
             "attention_mask": torch.zeros((len(rows), length), dtype=torch.long)}
    for i, row in enumerate(rows):
        n = len(row["input_ids"])
        batch["input_ids"][i, :n] = torch.tensor(row["input_ids"])
        batch["labels"][i, :n] = torch.tensor(row["labels"])
        batch["attention_mask"][i, :n] = 1
    return batch


def masked_accuracy(model: Any, dataset: Any, pad_id: int, settings: Settings, ratio: float, seed: int = 0,
                    batch_size: int = 8) -> float:
    """Masked-token accuracy on ``dataset`` at a fixed mask ratio (the same masks every time: seeded)."""
    import torch

    from ft_diffusion.noise import IGNORE_INDEX

    fixed = Settings(settings.mask_id, 0.0, "linear", ratio, ratio, settings.shift, settings.importance_weighting,
                     settings.normalization, settings.causal, None)  # the answers' own tokens only
    generator = torch.Generator().manual_seed(seed)
    device = next(model.parameters()).device
    hits = masked = 0
    was_training = model.training
    model.eval()
    try:
        for start in range(0, len(dataset), batch_size):
            rows = [dataset[i] for i in range(start, min(start + batch_size, len(dataset)))]
            batch = {k: v.to(device) for k, v in pad_rows(rows, pad_id).items()}
            if "labels" not in batch or not (batch["labels"] != IGNORE_INDEX).any():
                continue
            with torch.no_grad():
                _, _, stats = diffusion_step(model, batch, fixed, generator=generator, t=1.0)
            hits += int(stats["hits"])
            masked += int(stats["masked"])
    finally:
        model.train(was_training)
    return hits / masked if masked else 0.0


#: Length of the answers written to samples.jsonl during training.
SAMPLE_TOKENS = 32


def samples_callback(ctx: RunContext, sample: Any, prompts: list[list[int]], every: int) -> Any:
    """Every ``every`` steps, generate answers for a few held-out prompts into ``samples.jsonl``."""
    from transformers import TrainerCallback

    class Samples(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):  # noqa: ANN001
            if not every or state.global_step % every:
                return
            # Every rank samples (a sharded model's forward is collective); rank 0 writes.
            with gathered_weights(ctx):
                answers = sample(prompts, SAMPLE_TOKENS)
            if not state.is_world_process_zero:
                return
            with (ctx.run_dir / "samples.jsonl").open("a", encoding="utf-8") as handle:
                for prompt, answer in zip(prompts, answers):
                    handle.write(json.dumps({"step": state.global_step,
                                             "prompt": ctx.tokenizer.decode(prompt, skip_special_tokens=True),
                                             "answer": ctx.tokenizer.decode(answer, skip_special_tokens=True)}) + "\n")

    return Samples()

