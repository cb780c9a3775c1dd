"""ft-qlora's hooks: load the base quantised by bitsandbytes, prepare it for k-bit training, LoRA on top.

QLoRA builds on ft-lora through ft's own mechanisms only, never by importing it:

* ``FT_PLUGIN.requires = ("lora",)``: selecting ``adapter=qlora`` activates the lora plugin too, whose
  ``post_model_load`` wraps the model in a PEFT LoRA adapter and whose ``post_save`` writes the adapter;
* ``adapter/qlora.yaml`` lists ``lora`` in its Hydra defaults, so it inherits every LoRA key;
* the ``config_schemas`` wrapper below takes the ``adapter/lora`` schema that ft-lora contributes and
  extends it with the quantisation keys, so both sets of keys are type-checked;
* ``pre_model_load`` contributes the ``BitsAndBytesConfig``; ``prepare_model`` (the model's *prepare*
  phase, which comes before the *adapt* phase where LoRA wraps it) readies the base for k-bit training.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import logging
import os
from dataclasses import dataclass
from typing import Any, Literal

from ft.api import ConfigError, PluginError, PluginInfo, RunContext, hookimpl

FT_PLUGIN = PluginInfo(
    name="qlora", contract="3.0",
    description="QLoRA (adapter=qlora): base weights in 4-bit (or 8-bit) through bitsandbytes, LoRA on top",
    requires=("lora",),
)

log = logging.getLogger("ft")


@dataclass
class QuantizationKeys:
    """The keys ``adapter/qlora`` adds to LoRA's (see ``ft_qlora/conf/adapter/qlora.yaml``)."""

    bits: Literal[4, 8] = 4
    quant_type: Literal["nf4", "fp4"] = "nf4"
    double_quant: bool = True
    compute_dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    quant_storage: Literal["uint8", "float16", "bfloat16", "float32"] = "uint8"
    skip_modules: list[str] | None = None


def qlora_schema(lora_schema: type | None) -> type:
    """LoRA's schema (as contributed by the lora plugin) extended with :class:`QuantizationKeys`."""
    import typing

    fields = []
    for schema in (lora_schema, QuantizationKeys):
        if schema is None:
            continue
        hints = typing.get_type_hints(schema)
        for f in dataclasses.fields(schema):
            spec = dataclasses.field(default=f.default, default_factory=f.default_factory, metadata=f.metadata)
            fields.append((f.name, hints[f.name], spec))
    return dataclasses.make_dataclass("QLoraAdapterConfig", fields)


@hookimpl(wrapper=True)
def config_schemas() -> Any:
    contributions = yield
    lora_schema = next((c["adapter/lora"] for c in contributions if c and "adapter/lora" in c), None)
    return [*contributions, {"adapter/qlora": qlora_schema(lora_schema)}]


def bitsandbytes_installed() -> bool:
    try:
        return importlib.util.find_spec("bitsandbytes") is not None
    except (ImportError, ValueError):
        return False


@hookimpl
def validate_config(cfg: Any, choices: dict[str, str | None]) -> None:
    adapter = cfg.get("adapter")
    if adapter is None or not hasattr(adapter, "bits"):
        return
    if not bitsandbytes_installed():
        raise ConfigError(
            f"adapter=qlora loads the base in {adapter.bits}-bit through bitsandbytes, which is not installed; "
            f"install it with: pip install bitsandbytes"
        )
    init = adapter.init
    if init == "olora" or init.startswith("pissa"):
        raise ConfigError(
            f"adapter.init={init} rewrites the base weights, which adapter=qlora keeps quantised and frozen; "
            f"use adapter.init=default or gaussian"
        )
    if init == "orthogonal":
        raise ConfigError(
            "adapter.init=orthogonal does not work on a quantised base (PEFT builds the adapter in the base "
            "weights' dtype, packed integers here); use adapter.init=default or gaussian"
        )


def bnb_config(adapter: Any) -> Any:
    """``transformers.BitsAndBytesConfig`` for the ``adapter`` section."""
    import torch
    from transformers import BitsAndBytesConfig

    skip = [str(m) for m in adapter.skip_modules] if adapter.skip_modules else None
    if adapter.bits == 8:
        return BitsAndBytesConfig(load_in_8bit=True, llm_int8_skip_modules=skip)
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type=str(adapter.quant_type),
        bnb_4bit_use_double_quant=adapter.double_quant,
        bnb_4bit_compute_dtype=getattr(torch, str(adapter.compute_dtype)),
        bnb_4bit_quant_storage=getattr(torch, str(adapter.quant_storage)),
        llm_int8_skip_modules=skip,
    )


def quiet_bitsandbytes() -> None:
    """bitsandbytes warns at import, on CPUs with AVX512-BF16, that the optional ``kernels`` package
    (which downloads a kernel from the Hub) is missing; ft is offline-first, so that is expected."""
    logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)


@hookimpl
def pre_model_load(ctx: RunContext) -> dict[str, Any]:
    quiet_bitsandbytes()
    import torch

    kwargs: dict[str, Any] = {"quantization_config": bnb_config(ctx.cfg.adapter)}
    if torch.cuda.is_available():
        kwargs["device_map"] = {"": int(os.environ.get("LOCAL_RANK", "0"))}
    return kwargs


def keep_training_numerics(model: Any) -> int:
    """Keep bitsandbytes' 4-bit layers on their trainable path; return how many layers were changed.

    bitsandbytes 0.50, on CPUs with AVX512-BF16, repacks a ``Linear4bit``'s weights for a bf16
    inference kernel the first time the layer runs in eval mode without gradients (an evaluation, a
    before-training score, a reference pass) and keeps them repacked. Every later training step then
    goes through that kernel, which has no backward: the gradients of all layers below are silently
    wrong. Setting the layer's ``support_avx512bf16_for_cpu`` to False keeps evaluation and training on
    the de-quantise-and-multiply path, in ``compute_dtype``, so evaluation also matches training.
    """
    changed = 0
    for module in model.modules():
        if getattr(module, "support_avx512bf16_for_cpu", False):
            module.support_avx512bf16_for_cpu = False
            changed += 1
    return changed


@hookimpl
def prepare_model(ctx: RunContext) -> None:
    """Prepare the quantised base for training (the *prepare* phase: before the lora plugin wraps it)."""
    import warnings

    from peft import prepare_model_for_kbit_training

    adapter = ctx.cfg.adapter
    model = ctx.model
    if not (getattr(model, "is_loaded_in_4bit", False) or getattr(model, "is_loaded_in_8bit", False)):
        raise PluginError(
            "adapter=qlora: the model was not loaded quantised (the plugin that loads the model ignored "
            "quantization_config); drop the other model_loader plugin or use adapter=lora"
        )
    if adapter.bits == 8:
        # bitsandbytes' int8 matmul computes in float16 and says so on every call.
        warnings.filterwarnings("ignore", message="MatMul8bitLt: inputs will be cast")
    ctx.model = prepare_model_for_kbit_training(
        model, use_gradient_checkpointing=ctx.cfg.trainer.gradient_checkpointing
    )
    repacking_off = keep_training_numerics(ctx.model)
    if repacking_off:
        log.info("qlora: bitsandbytes' CPU bf16 inference repacking turned off on %d layers "
                 "(it would break gradients after any evaluation)", repacking_off)
    quantized = sum(1 for m in model.modules() if type(m).__name__ in ("Linear4bit", "Linear8bitLt"))
    if adapter.bits == 4:
        how = (f"4-bit {adapter.quant_type}{' + double quantisation' if adapter.double_quant else ''}, "
               f"computing in {adapter.compute_dtype}")
    else:
        how = "8-bit (LLM.int8)"
    log.info("qlora: base loaded in %s; %d linear layers quantised", how, quantized)


@hookimpl(optionalhook=True)
def axolotl_keys() -> dict[str, Any]:
    """Axolotl's keys for this plugin (ft-axolotl): ``ft_qlora/axolotl.py``."""
    from ft_qlora.axolotl import AXOLOTL_KEYS

    return AXOLOTL_KEYS
