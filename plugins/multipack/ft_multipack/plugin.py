"""ft-multipack's hooks: ``packing=multipack`` packs rows into full sequences, each row isolated.

Lifecycle: the kernel refuses a method that is not ``packable`` (``requires_traits``); ``validate_config``
checks the attention keys; ``collator`` (after the
model is loaded) picks how rows are kept apart in attention and checks it on the real model with a
two-row forward pass (``per_row`` switches the model to a registered attention function, and
``post_train`` switches it back); ``batch_sampler`` packs the train split (and the eval split, in order) and logs
packing efficiency, rows per pack and steps per epoch; ``post_trainer_create`` makes sure the trainer
normalises the loss by the trained tokens of the whole optimizer step, which is what makes packed and
unpacked runs of the same rows follow the same curve.

This plugin patches nothing: the kernel's trainer reads the ``batch_sampler`` result through
``ft.context.Batching``; transformers isolates packed rows itself from restarting ``position_ids``, and
the ``per_row`` attention is registered through transformers' public ``AttentionInterface``.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Any

from ft.api import ConfigError, PluginInfo, RunContext, gathered_weights, hookimpl
from ft_multipack.schema import MultipackConfig, check_packing_values

FT_PLUGIN = PluginInfo(
    name="multipack", contract="3.0",
    description="Sample packing (packing=multipack): rows share full sequences, isolated in attention and loss",
    capabilities=("collator", "batch_sampler"),
    requires_traits=("packable",),
)

log = logging.getLogger("ft")

#: Relative logit difference above which a row is taken to see the row packed before it.
ISOLATION_TOLERANCE = {"float32": 1e-4, "float64": 1e-6}
HALF_PRECISION_TOLERANCE = 3e-2


@dataclass
class PackingState:
    """The attention isolation chosen for this run, and each split's packing summary."""

    attention: str | None = None
    model_attention: str = ""
    splits: dict[str, dict[str, Any]] = field(default_factory=dict)


@hookimpl
def config_schemas() -> dict[str, type]:
    return {"packing/multipack": MultipackConfig}


@hookimpl
def validate_config(cfg: Any, choices: dict[str, str | None]) -> None:
    if choices.get("packing") == "multipack":
        check_packing_values(cfg, choices)


#: How each ``packing.attention`` mode is described in the start-up log.
MODE_DESCRIPTIONS = {
    "per_row": "sdpa on each row's slice of a pack",
    "position_ids": "positions restart per row, transformers masks across rows",
    "block_mask": "an explicit block-diagonal causal mask",
}


def candidate_modes(wanted: str, implementation: str, on_cpu: bool = True) -> list[str]:
    """The ``packing.attention`` modes to try, best first, for the model's attention implementation.

    ``per_row`` is preferred only on the CPU, where it was measured (1.67x against 1.42x trained
    tokens/s over padding with a block-diagonal mask); on a GPU its per-row kernel launches and
    host syncs are unmeasured, so ``auto`` keeps transformers' own masking there.
    """
    if wanted != "auto":
        return [wanted]
    if implementation == "sdpa":
        return ["per_row", "position_ids", "block_mask"] if on_cpu else ["position_ids", "block_mask"]
    if implementation == "eager":
        return ["position_ids", "block_mask"]
    return ["position_ids"]


@hookimpl
def collator(ctx: RunContext) -> Any:
    import torch

    from ft_multipack.attention import PER_ROW, use_attention
    from ft_multipack.collator import PackedCollator

    packing = ctx.cfg.packing
    model = ctx.model
    implementation = getattr(model.config, "_attn_implementation", None) or "eager"
    dtype = next((p.dtype for p in model.parameters() if p.dtype.is_floating_point), None) or torch.float32
    pad_id = ctx.tokenizer.pad_token_id if ctx.tokenizer.pad_token_id is not None else ctx.tokenizer.eos_token_id
    wanted = packing.attention
    if wanted == "per_row" and implementation != "sdpa":
        raise ConfigError(f"packing.attention=per_row runs sdpa row by row, but the model uses {implementation} "
                          "attention; set model.attn_implementation=sdpa or packing.attention=auto")
    gaps: dict[str, float] = {}
    on_cpu = next(model.parameters()).device.type == "cpu"
    for mode in candidate_modes(wanted, implementation, on_cpu):
        if mode == "per_row":
            use_attention(model, PER_ROW)
        built = PackedCollator(pad_id, attention="block_mask" if mode == "block_mask" else "position_ids",
                               attn_implementation=implementation, mask_dtype=dtype,
                               pad_to_multiple_of=packing.pad_to_multiple_of)
        with gathered_weights(ctx, model):  # every rank checks, together (ZeRO-3 gathers the partitioned weights)
            gaps[mode] = isolation_gap(model, built, int(model.config.vocab_size))
        if gaps[mode] <= _tolerance(dtype):
            log.info("packing: attention=%s (%s; model attention %s); a row's logits packed and alone differ by %.1e",
                     mode, MODE_DESCRIPTIONS[mode], implementation, gaps[mode])
            packing_state = ctx.state(PackingState)
            packing_state.attention, packing_state.model_attention = mode, implementation
            return built
        if mode == "per_row":
            use_attention(model, implementation)
    tried = ", ".join(f"{mode}: {gap:.2e}" for mode, gap in gaps.items())
    raise ConfigError(
        f"packing=multipack cannot keep packed rows apart in {type(model).__name__} with {implementation} attention "
        f"(a row's logits change when another row is packed before it; relative difference {tried}); "
        "set model.attn_implementation=sdpa (or eager) with packing.attention=block_mask, or remove +packing=multipack")


@hookimpl(tryfirst=True)
def post_train(ctx: RunContext, metrics: dict[str, Any]) -> None:
    """Give the model its own attention back before anything scores, generates with or saves it."""
    from ft_multipack.attention import use_attention

    state = ctx.state(PackingState)
    if state.attention == "per_row":
        use_attention(ctx.model, state.model_attention)


def _tolerance(dtype: Any) -> float:
    return ISOLATION_TOLERANCE.get(str(dtype).removeprefix("torch."), HALF_PRECISION_TOLERANCE)


def isolation_gap(model: Any, collator: Any, vocab_size: int) -> float:
    """Relative max difference between a row's logits packed after another row and alone.

    Zero (up to rounding) when packing isolates rows; of the order of the logits when it does not.
    The model runs in eval mode (no dropout) and is put back in the mode it was in.
    """
    import torch

    generator = torch.Generator().manual_seed(0)
    low = min(4, vocab_size - 1)
    before = torch.randint(low, vocab_size, (24,), generator=generator).tolist()
    row = torch.randint(low, vocab_size, (9,), generator=generator).tolist()
    packed = collator([{"input_ids": [before, row], "labels": [before, row]}])
    alone = collator([{"input_ids": [row], "labels": [row]}])
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            logits_packed = model(**_inputs(packed, device)).logits[0, len(before):len(before) + len(row)].float()
            logits_alone = model(**_inputs(alone, device)).logits[0, :len(row)].float()
    finally:
        model.train(was_training)
    scale = logits_alone.abs().max().clamp_min(1e-6)
    return float((logits_packed - logits_alone).abs().max() / scale)


def _inputs(batch: dict[str, Any], device: Any) -> dict[str, Any]:
    return {key: value.to(device) if hasattr(value, "to") else value
            for key, value in batch.items() if key != "labels"}


@hookimpl
def batch_sampler(ctx: RunContext, dataset: Any, split: str) -> Any:
    from ft.api import Batching
    from ft_multipack.sampler import MultipackBatchSampler, PackedRows, row_lengths

    packing = ctx.cfg.packing
    if split == "eval" and not packing.eval:
        return None
    capacity = ctx.cfg.data.sequence_len
    lengths = row_lengths(dataset)
    longest = int(lengths.max()) if len(lengths) else 0
    if longest > capacity:
        raise ConfigError(f"the {split} split has a row of {longest} tokens, longer than data.sequence_len={capacity}; "
                          "set data.too_long=drop or truncate, or raise data.sequence_len")
    world, rank = ctx.world_size, ctx.rank
    trainer = ctx.cfg.trainer
    sampler = MultipackBatchSampler(lengths, capacity, trainer.micro_batch_size, seed=ctx.cfg.seed,
                                    shuffle=split == "train", group_size=packing.group_size,
                                    num_replicas=world, rank=rank)
    summary = sampler.report()
    line = f"packing ({split}): {summary.describe()}"
    if split == "train":
        accumulation = trainer.gradient_accumulation_steps
        steps = math.ceil(len(sampler) / accumulation)
        per_batch = trainer.micro_batch_size
        line += (f"; {len(sampler)} batches of {per_batch} pack{'s' if per_batch > 1 else ''} per rank"
                 f" ({world} rank{'s' if world > 1 else ''}), {steps} optimizer steps per epoch")
    log.info(line)
    ctx.state(PackingState).splits[split] = {"efficiency": round(summary.efficiency, 5), "rows_per_pack": round(summary.rows_per_pack, 2),
                    "packs": summary.packs, "batches": len(sampler)}
    return Batching(sampler=sampler, dataset=PackedRows(dataset))


@hookimpl
def post_trainer_create(ctx: RunContext) -> None:
    trainer = ctx.trainer
    if not (getattr(trainer, "model_accepts_loss_kwargs", False) or getattr(trainer, "compute_loss_func", None)):
        raise ConfigError(
            f"packing=multipack needs the loss averaged over the trained tokens of the whole optimizer step, but "
            f"{type(ctx.model).__name__}.forward takes no loss keyword arguments (num_items_in_batch), so the trainer "
            "would average per batch and packed runs would weight rows differently; remove +packing=multipack")


@hookimpl(optionalhook=True)
def axolotl_keys() -> dict[str, Any]:
    """Axolotl's keys for this plugin (ft-axolotl): ``ft_multipack/axolotl.py``."""
    from ft_multipack.axolotl import AXOLOTL_KEYS

    return AXOLOTL_KEYS
