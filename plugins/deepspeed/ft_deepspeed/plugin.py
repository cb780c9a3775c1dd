"""ft-deepspeed's hooks: ``dist=zero1|zero2|zero3`` trains under DeepSpeed ZeRO.

transformers' Trainer runs DeepSpeed itself (``TrainingArguments(deepspeed=...)``); this plugin only
writes the DeepSpeed config from ft's config, so nobody edits a JSON by hand. Every value the trainer
knows (batch sizes, accumulation, clipping, precision, learning rate) is ``"auto"`` and filled in by
transformers from ft's ``trainer``/``optim`` sections, so the two can never disagree. The config is
built in ``training_args``, before the model loads, which is what lets ZeRO-3 create the model already
partitioned (``zero.Init``). ``dist.config_file`` uses a user's own JSON instead; its stage must match
the option. ZeRO-3 saves the final model gathered into one safetensors file
(``stage3_gather_16bit_weights_on_model_save``), loadable by plain transformers. Nothing is patched.
"""

from __future__ import annotations

import importlib.util
import json
import logging
from pathlib import Path
from typing import Any

from ft.api import ConfigError, PluginInfo, RunContext, hookimpl, selected_options
from ft_deepspeed.schema import ZeroConfig

FT_PLUGIN = PluginInfo(
    name="deepspeed", contract="3.0",
    description="DeepSpeed ZeRO (dist=zero1|zero2|zero3), its config generated from ft's",
    conflicts=("fsdp",),
)

log = logging.getLogger("ft")
OPTIONS = {"zero1": 1, "zero2": 2, "zero3": 3}
#: 4-bit storage dtypes ZeRO-3 can partition (it flattens parameters of one float dtype).
SHARDABLE_STORAGE = ("float16", "bfloat16", "float32")


@hookimpl
def config_schemas() -> dict[str, type]:
    return {f"dist/{option}": ZeroConfig for option in OPTIONS}


def selected_stage(choices: dict[str, str | None]) -> int | None:
    """The ZeRO stage the config selects, or None."""
    return next((OPTIONS[o] for o in selected_options(choices, "dist") if o in OPTIONS), None)


def read_config_file(path: str) -> dict[str, Any]:
    """A user's DeepSpeed JSON; a :class:`ConfigError` naming the problem when it is not one."""
    try:
        value = json.loads(Path(path).expanduser().read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"dist.config_file={path!r} is not a readable DeepSpeed JSON ({exc})") from exc
    if not isinstance(value, dict):
        raise ConfigError(f"dist.config_file={path!r} holds {type(value).__name__}, not a DeepSpeed config object")
    return value


@hookimpl
def validate_config(cfg: Any, choices: dict[str, str | None]) -> None:
    stage = selected_stage(choices)
    if stage is None:
        return
    if importlib.util.find_spec("deepspeed") is None:
        raise ConfigError(f"dist=zero{stage} needs DeepSpeed: pip install deepspeed")
    dist = cfg.dist
    if dist.offload_param != "none" and stage != 3:
        raise ConfigError(f"dist.offload_param={dist.offload_param} needs parameters to be partitioned: use dist=zero3 "
                          f"(or drop dist.offload_param with dist=zero{stage})")
    if dist.config_file:
        declared = read_config_file(dist.config_file).get("zero_optimization", {}).get("stage")
        if declared is not None and declared != stage:
            raise ConfigError(f"dist.config_file sets ZeRO stage {declared}, but dist=zero{stage} is selected; "
                              f"select dist=zero{declared} or change the file")
    storage = getattr(getattr(cfg, "adapter", None), "quant_storage", None)
    if stage == 3 and storage is not None and str(storage) not in SHARDABLE_STORAGE:
        raise ConfigError(f"dist=zero3 partitions parameters of one float dtype, but adapter.quant_storage={storage} "
                          "packs the 4-bit base in integers; set adapter.quant_storage=bfloat16 (or use dist=zero2)")


def deepspeed_config(dist: Any, stage: int) -> dict[str, Any]:
    """The DeepSpeed JSON for ``dist`` (``"auto"`` values are filled in by transformers from ft's config)."""
    zero: dict[str, Any] = {
        "stage": stage,
        "overlap_comm": dist.overlap_comm,
        "contiguous_gradients": True,
        # null: "auto", which transformers sizes from the model (hidden_size squared), as for stage 3's buckets
        "reduce_bucket_size": dist.reduce_bucket_size or "auto",
    }
    config: dict[str, Any] = {
        "train_micro_batch_size_per_gpu": "auto",
        "gradient_accumulation_steps": "auto",
        "train_batch_size": "auto",
        "gradient_clipping": "auto",
        "bf16": {"enabled": "auto"},
        "fp16": {"enabled": "auto"},
        "zero_optimization": zero,
        "steps_per_print": 1_000_000_000,  # ft logs progress; DeepSpeed's own lines would repeat it
        "wall_clock_breakdown": False,
    }
    if dist.offload_optimizer != "none":
        zero["offload_optimizer"] = {"device": dist.offload_optimizer, "pin_memory": False}
        # Offloaded optimizer steps run on the CPU: DeepSpeed's CPU Adam (a compiled op) does them.
        config["optimizer"] = {"type": "AdamW", "params": {"lr": "auto", "betas": "auto", "eps": "auto",
                                                           "weight_decay": "auto"}}
    if stage == 3:
        zero.update(stage3_prefetch_bucket_size="auto", stage3_param_persistence_threshold="auto",
                    stage3_gather_16bit_weights_on_model_save=True)
        if dist.offload_param != "none":
            zero["offload_param"] = {"device": dist.offload_param, "pin_memory": False}
    return config


def join_process_group() -> None:
    """Let DeepSpeed's communication layer adopt the process group ft already joined.

    ZeRO-3 partitions the model while it loads (before the trainer starts DeepSpeed's engine), and it
    reads the world size from ``deepspeed.comm``; uninitialised, that says 1 and the batch check fails."""
    import deepspeed
    from deepspeed.accelerator import get_accelerator

    deepspeed.init_distributed(dist_backend=get_accelerator().communication_backend_name())


@hookimpl
def gather_weights(ctx: RunContext, model: Any) -> Any:
    """Under ZeRO-3 each rank holds an empty placeholder per parameter: DeepSpeed's ``GatheredParameters``
    makes them whole for a forward pass outside the engine (scoring, checks, samples)."""
    if not any(hasattr(p, "ds_id") and p.numel() == 0 for p in model.parameters()):
        return None
    import deepspeed

    return deepspeed.zero.GatheredParameters(list(model.parameters()), modifier_rank=None)


@hookimpl
def training_args(ctx: RunContext) -> dict[str, Any]:
    stage = selected_stage(ctx.choices)
    if stage is None:
        return {}
    dist = ctx.cfg.dist
    if dist.config_file:
        config = read_config_file(dist.config_file)
        if stage == 3:  # the final model must be loadable: gather it when saving
            config.setdefault("zero_optimization", {}).setdefault("stage3_gather_16bit_weights_on_model_save", True)
    else:
        config = deepspeed_config(dist, stage)
    if ctx.world_size > 1:
        join_process_group()
    if ctx.is_main:
        (Path(ctx.run_dir) / "deepspeed.json").write_text(json.dumps(config, indent=2) + "\n")
    offload = [name for name, value in (("optimizer", dist.offload_optimizer), ("parameters", dist.offload_param))
               if value != "none"]
    log.info("deepspeed: ZeRO stage %d over %d ranks%s; config %s", stage, ctx.world_size,
             f", {' and '.join(offload)} offloaded to CPU" if offload else "",
             dist.config_file or Path(ctx.run_dir) / "deepspeed.json")
    return {"deepspeed": config}


@hookimpl(optionalhook=True)
def axolotl_keys() -> dict[str, Any]:
    """Axolotl's keys for this plugin (ft-axolotl): ``ft_deepspeed/axolotl.py``."""
    from ft_deepspeed.axolotl import AXOLOTL_KEYS

    return AXOLOTL_KEYS
