"""Build TRL's preference trainers from ft's config: one table of methods, one builder.

Every trainer is ``ft_trainer.api.ft_trainer_class(TRLTrainer)``, so ft's ``loss`` chain and
``process_batch`` keep working on top of TRL. The TRL config class (``DPOConfig``...) is this
plugin's ``training_args_class``, and the method's own knobs are its ``training_args`` fragment, so
the kernel builds the arguments (``ctx.args``) from the ``trainer`` and ``optim`` groups plus these
before the model loads. TRL defaults that do not fit the machine (bf16 autocast and gradient
checkpointing are on by default in TRL, even on CPU) are set from ft's ``trainer.precision`` and
``trainer.gradient_checkpointing``, so ``ft run`` behaves the same for every method.
"""

from __future__ import annotations

import dataclasses
import importlib
import logging
import warnings
from dataclasses import dataclass
from typing import Any

from ft.api import PluginError, RunContext

log = logging.getLogger("ft")


@dataclass(frozen=True)
class MethodSpec:
    """How one ``method=<name>`` maps onto TRL."""

    name: str
    kind: str  # "paired" (prompt/chosen/rejected) or "unpaired" (prompt/completion/label)
    needs_reference: bool
    trainer: str  # "module:Class"
    config: str


METHODS: dict[str, MethodSpec] = {
    "dpo": MethodSpec("dpo", "paired", True, "trl:DPOTrainer", "trl:DPOConfig"),
    "ipo": MethodSpec("ipo", "paired", True, "trl:DPOTrainer", "trl:DPOConfig"),
    "kto": MethodSpec("kto", "unpaired", True, "trl:KTOTrainer", "trl:KTOConfig"),
    "orpo": MethodSpec("orpo", "paired", False, "trl.experimental.orpo:ORPOTrainer", "trl.experimental.orpo:ORPOConfig"),
    "simpo": MethodSpec("simpo", "paired", False, "trl.experimental.cpo:CPOTrainer", "trl.experimental.cpo:CPOConfig"),
}


def spec_for(ctx_or_choices: Any) -> MethodSpec:
    choices = ctx_or_choices if isinstance(ctx_or_choices, dict) else ctx_or_choices.choices
    return METHODS[choices["method"]]


def _load(ref: str) -> Any:
    module, name = ref.split(":")
    with warnings.catch_warnings():
        # trl.experimental warns on import that its API may change; ft pins the version it supports.
        warnings.simplefilter("ignore")
        return getattr(importlib.import_module(module), name)


def method_fields(name: str, method: Any) -> dict[str, Any]:
    """The TRL config fields of one method, from its typed ``method`` config section."""
    fields: dict[str, Any] = {"beta": method.beta, "max_length": method.max_length}
    if name == "dpo":
        fields.update(loss_type=[method.loss_type], label_smoothing=method.label_smoothing)
    elif name == "ipo":
        fields.update(loss_type=["ipo"])
    elif name == "kto":
        fields.update(loss_type=method.loss_type, desirable_weight=method.desirable_weight,
                      undesirable_weight=method.undesirable_weight)
    elif name == "simpo":
        fields.update(loss_type="simpo", simpo_gamma=method.gamma, cpo_alpha=method.cpo_alpha,
                      label_smoothing=method.label_smoothing)
    if METHODS[name].needs_reference:
        fields["precompute_ref_log_probs"] = method.precompute_ref_log_probs
    return fields


def config_class(ctx: RunContext) -> type:
    """The TRL config class of the selected method (``DPOConfig``...)."""
    return _load(spec_for(ctx).config)


def method_arguments(ctx: RunContext) -> dict[str, Any]:
    """The method's fields of the TRL config, plus the settings TRL defaults differently from ft.

    TRL turns gradient checkpointing on by default (even on CPU); ft's ``trainer.gradient_checkpointing``
    decides, the same for every method. bf16/fp16 come from the kernel's base arguments.
    """
    fields = {f.name for f in dataclasses.fields(config_class(ctx))}
    checkpointing = ctx.cfg.trainer.gradient_checkpointing
    kwargs: dict[str, Any] = {}
    if "activation_checkpointing" in fields:  # transformers >= 5.23 reads the new name; the old one is a fallback
        kwargs["activation_checkpointing"] = checkpointing
    elif not checkpointing:  # pragma: no cover - older transformers
        kwargs["gradient_checkpointing"] = False
    kwargs.update(method_fields(spec_for(ctx).name, ctx.cfg.method))
    return kwargs


def is_peft_model(model: Any) -> bool:
    try:
        from peft import PeftModel
    except ImportError:  # pragma: no cover - peft is a dependency
        return False
    return isinstance(model, PeftModel)


def build_trainer(ctx: RunContext) -> Any:
    """The ft-aware TRL trainer of the selected method, with its reference set up."""
    from ft_trainer.api import ft_trainer_class

    spec = spec_for(ctx)
    method_cfg = ctx.cfg.method
    trainer_cls = _load(spec.trainer)
    peft = is_peft_model(ctx.model)
    kwargs: dict[str, Any] = {
        "model": ctx.model,
        "args": ctx.args,
        "train_dataset": ctx.datasets.train,
        "eval_dataset": ctx.datasets.eval,
        "processing_class": ctx.tokenizer,
        "callbacks": ctx.callbacks,
        "ft_ctx": ctx,
    }
    if spec.needs_reference:
        kwargs["ref_model"] = reference_for(ctx, peft, method_cfg.precompute_ref_log_probs)
    dtypes = {name: p.dtype for name, p in ctx.model.named_parameters() if p.requires_grad}
    trainer = ft_trainer_class(trainer_cls)(**kwargs)
    restore_trainable_dtypes(ctx.model, dtypes)
    if peft and spec.needs_reference and use_base_as_reference(ctx.model, method_cfg.reference_adapter):
        drop_reference_adapter(ctx.model)
    return trainer


def restore_trainable_dtypes(model: Any, dtypes: dict[str, Any]) -> None:
    """Undo TRL's cast of a quantized model's trainable parameters to bfloat16.

    DPOTrainer and KTOTrainer cast QLoRA adapters to bfloat16 whatever the run's precision; on a CPU
    without bfloat16 arithmetic that makes every step several times slower. The adapter plugin chose
    the dtype (``adapter.compute_dtype``, ``trainer.precision``), so it is kept.
    """
    changed = 0
    for name, param in model.named_parameters():
        dtype = dtypes.get(name)
        if dtype is not None and param.dtype != dtype:
            param.data = param.data.to(dtype)
            changed += 1
    if changed:
        log.info("kept %d trainable tensors in %s (TRL casts a quantized model's adapter to bfloat16)",
                 changed, next(iter(dtypes.values())))


def reference_for(ctx: RunContext, peft: bool, precompute: bool) -> Any:
    """The reference model to hand TRL, or ``None`` where TRL needs no separate model.

    With an adapter the reference is the base model with the adapter disabled; with precomputed
    reference log-probs TRL scores the data once with the untrained model before training starts.
    Otherwise (full fine-tune) the kernel's ``load_reference_model`` hook provides a frozen copy.
    """
    if peft:
        if use_base_as_reference(ctx.model, ctx.cfg.method.reference_adapter):
            log.info("reference: the base model with the adapter disabled (no second copy)")
        else:
            log.info("reference: a frozen copy of the starting adapter on the shared base model")
        return None
    if precompute:
        log.info("reference: log-probs precomputed once with the model before training (no copy kept)")
        return None
    reference = ctx.pm.hook.load_reference_model(ctx=ctx, role="reference", source=None, load_kwargs=None)
    if reference is None:
        raise PluginError("no plugin provided a reference model for a full fine-tune (load_reference_model)")
    ctx.reference_model = reference
    log.info("reference: a frozen copy of the model (full fine-tune)")
    return reference


def adapter_is_identity(model: Any) -> bool:
    """True when the active adapter does not change the model yet (a new LoRA: every B is zero).

    Adapters ft cannot inspect (not LoRA) count as not the identity, which keeps the safe reference.
    """
    active = model.active_adapter
    lora_b = [p for n, p in model.named_parameters() if "lora_B" in n and f".{active}." in n]
    return bool(lora_b) and all(not p.detach().any() for p in lora_b)


def use_base_as_reference(model: Any, choice: str) -> bool:
    """Whether the reference is the base with the adapter disabled (``method.reference_adapter``)."""
    if choice == "auto":
        return adapter_is_identity(model)
    return choice == "base"


def drop_reference_adapter(model: Any) -> None:
    """Remove the ``ref`` adapter TRL copies from a PeftModel's starting adapter.

    TRL keeps a copy of the starting adapter as the reference. A new LoRA adapter starts as the
    identity, so the base model with the adapter disabled is the same reference without the copy (and
    the saved adapter folder holds only the trained adapter).
    """
    if "ref" in getattr(model, "peft_config", {}):
        active = model.active_adapter
        model.delete_adapter("ref")
        if model.active_adapter != active:
            model.set_adapter(active)
