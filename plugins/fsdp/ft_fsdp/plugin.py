"""ft-fsdp's hooks: ``dist=fsdp`` shards the model with PyTorch's FSDP2 (``fully_shard``).

ft does no sharding itself: ``training_args`` turns the ``dist`` section into transformers'
``fsdp``/``fsdp_config`` arguments and accelerate applies ``fully_shard`` per decoder layer when the
trainer prepares the model (LoRA's ``PeftModel`` included). Checkpoints are written sharded (each rank
its part, through torch.distributed.checkpoint; resume reads them back with the same number of ranks);
``post_train`` switches to the full state dict so the final ``model/`` is one ordinary safetensors file
that plain transformers loads.

One documented patch (README): accelerate 1.15 runs FSDP only on accelerators; for ranks that are CPU
processes (gloo) it falls back to DDP and ignores the FSDP plugin. ``post_trainer_create`` then switches
accelerate's shared state to FSDP with the plugin transformers built, before the trainer prepares the
model, so the CPU path runs the same ``fully_shard`` code as a GPU (ft's tests depend on it).
"""

from __future__ import annotations

import logging
from typing import Any

from ft.api import ConfigError, PluginInfo, RunContext, hookimpl, selected_options
from ft_fsdp.schema import FsdpConfig

FT_PLUGIN = PluginInfo(
    name="fsdp", contract="3.0",
    description="Fully sharded data parallel (dist=fsdp): PyTorch FSDP2 through transformers and accelerate",
    conflicts=("deepspeed",),
)

log = logging.getLogger("ft")
#: transformers' names for the checkpoint formats.
STATE_DICT_TYPES = {"sharded": "SHARDED_STATE_DICT", "full": "FULL_STATE_DICT"}
#: 4-bit storage dtypes FSDP can shard (it flattens parameters of one float dtype).
SHARDABLE_STORAGE = ("float16", "bfloat16", "float32")


@hookimpl
def config_schemas() -> dict[str, type]:
    return {"dist/fsdp": FsdpConfig}


def _selected(choices: dict[str, str | None]) -> bool:
    return "fsdp" in selected_options(choices, "dist")


@hookimpl
def validate_config(cfg: Any, choices: dict[str, str | None]) -> None:
    if not _selected(choices):
        return
    storage = getattr(getattr(cfg, "adapter", None), "quant_storage", None)
    if storage is not None and str(storage) not in SHARDABLE_STORAGE:
        raise ConfigError(f"dist=fsdp shards parameters of one float dtype, but adapter.quant_storage={storage} packs the "
                          "4-bit base in integers; set adapter.quant_storage=bfloat16 (or float32 with trainer.precision=fp32)")
    if cfg.dist.activation_checkpointing and cfg.trainer.gradient_checkpointing:
        raise ConfigError("dist.activation_checkpointing=true and trainer.gradient_checkpointing=true both recompute "
                          "activations (the latter with an extra all-gather under FSDP); keep dist.activation_checkpointing only")


@hookimpl
def training_args(ctx: RunContext) -> dict[str, Any]:
    if not _selected(ctx.choices):
        return {}
    dist = ctx.cfg.dist
    fsdp_config: dict[str, Any] = {
        "version": 2,
        "reshard_after_forward": dist.reshard_after_forward,
        "cpu_offload": dist.cpu_offload,
        "activation_checkpointing": dist.activation_checkpointing,
        "state_dict_type": STATE_DICT_TYPES[dist.checkpoint_format],
        "cpu_ram_efficient_loading": dist.cpu_ram_efficient_loading,
    }
    if dist.wrap:
        fsdp_config["transformer_layer_cls_to_wrap"] = list(dist.wrap)
    return {"fsdp": True, "fsdp_config": fsdp_config}


@hookimpl
def post_model_load(ctx: RunContext) -> None:
    if not _selected(ctx.choices):
        return
    model = ctx.model
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    wrap = list(ctx.cfg.dist.wrap or getattr(base, "_no_split_modules", None) or [])
    present = {type(module).__name__ for module in base.modules()}
    missing = [name for name in wrap if name not in present]
    if ctx.cfg.dist.wrap and missing:
        raise ConfigError(f"dist.wrap names {', '.join(missing)}, which {type(base).__name__} does not contain; "
                          f"its layer classes include {', '.join(sorted(n for n in present if 'Layer' in n)) or 'none'}")
    units = sum(1 for module in base.modules() if type(module).__name__ in wrap)
    log.info("fsdp: FSDP2 over %d ranks, %d %s units%s%s; checkpoints %s", ctx.world_size, units,
             "/".join(name for name in wrap if name in present) or "whole-model",
             ", reshard after forward" if ctx.cfg.dist.reshard_after_forward else "",
             ", CPU offload" if ctx.cfg.dist.cpu_offload else "", ctx.cfg.dist.checkpoint_format)


@hookimpl(tryfirst=True)
def post_trainer_create(ctx: RunContext) -> None:
    if not _selected(ctx.choices) or ctx.world_size <= 1:
        return
    trainer = ctx.trainer
    if getattr(trainer, "is_fsdp_enabled", False):
        return
    use_fsdp_on_cpu_processes(trainer)


def use_fsdp_on_cpu_processes(trainer: Any) -> None:
    """Switch accelerate's state from DDP to FSDP for CPU ranks (the patch the README names).

    accelerate copies ``PartialState``'s distributed type into every new ``AcceleratorState``, so both
    shared states are switched, as accelerate does itself when it selects FSDP."""
    from accelerate.state import PartialState
    from accelerate.utils import DistributedType, FullyShardedDataParallelPlugin

    state = trainer.accelerator.state
    if state.distributed_type != DistributedType.MULTI_CPU:
        raise ConfigError(f"dist=fsdp: accelerate chose {state.distributed_type} instead of FSDP for this job; "
                          "launch it with torchrun (or ft run dist.nproc_per_node=N) on GPUs or CPU processes")
    plugin = FullyShardedDataParallelPlugin(**trainer.args.fsdp_plugin_args)
    if state.mixed_precision != "no":
        plugin.set_mixed_precision(state.mixed_precision)
    state.fsdp_plugin = plugin
    state.distributed_type = DistributedType.FSDP
    PartialState().distributed_type = DistributedType.FSDP
    trainer.is_fsdp_enabled = True


@hookimpl
def post_train(ctx: RunContext, metrics: dict[str, Any]) -> None:
    """The final model is saved whole: one safetensors file any transformers install loads."""
    if not _selected(ctx.choices):
        return
    plugin = getattr(getattr(ctx.trainer.accelerator, "state", None), "fsdp_plugin", None)
    if plugin is not None:
        plugin.set_state_dict_type(STATE_DICT_TYPES["full"])


@hookimpl(optionalhook=True)
def axolotl_keys() -> dict[str, Any]:
    """Axolotl's keys for this plugin (ft-axolotl): ``ft_fsdp/axolotl.py``."""
    from ft_fsdp.axolotl import AXOLOTL_KEYS

    return AXOLOTL_KEYS
