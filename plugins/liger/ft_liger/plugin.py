"""ft-liger's hooks: ``kernels=liger`` patches Liger Kernel's Triton kernels into the model.

**This plugin patches a library** (see README): Liger's ``apply_liger_kernel_to_<family>`` replaces the
model's forward (fused linear cross entropy), its RMSNorm and SwiGLU modules, and the family's
``apply_rotary_pos_emb`` function in its transformers modeling module. ft restores that module when the
run ends (``ctx.add_cleanup``), so the next run in the same process starts from plain transformers.

* ``prepare_model`` (before adapters wrap the model): the patch, for the parts switched on that can run
  here. Triton needs a CUDA GPU; without one, one line at start names the parts left out (under
  ``TRITON_INTERPRET=1``, Triton's CPU interpreter, ``rope`` and ``fused_linear_cross_entropy`` run).
* ``loss`` (capability ``loss``, methods with the ``token_loss`` trait): the method's own loss, which the
  patched forward computes fused; a loss term that needs the logits (method=kd) gets them.
"""

from __future__ import annotations

import logging
import os
import sys
from dataclasses import dataclass, field
from typing import Any

from ft.api import ConfigError, PluginInfo, RunContext, hookimpl

FT_PLUGIN = PluginInfo(
    name="liger", contract="3.0",
    description="Liger Kernel (kernels=liger): fused RMSNorm, RoPE, SwiGLU and linear cross entropy (patches the model)",
    capabilities=("loss",),
    requires_traits=("token_loss",),
)

WHO = "kernels=liger"
PARTS = ("fused_linear_cross_entropy", "rms_norm", "rope", "swiglu")
#: The parts whose Triton kernels Triton's CPU interpreter runs (liger-kernel 0.8.5, triton 3.9); the
#: RMSNorm and SwiGLU kernels use operations the interpreter lacks.
INTERPRETER_PARTS = ("fused_linear_cross_entropy", "rope")
log = logging.getLogger("ft")


@dataclass
class LigerState:
    """Which Liger kernels this run applied, and whether the full-logits warning was given."""

    applied: dict[str, bool] = field(default_factory=dict)
    warned_logits: bool = False


@hookimpl
def config_schemas() -> dict[str, type]:
    from ft_liger.schema import LigerConfig

    return {"kernels/liger": LigerConfig}


def runnable_parts() -> tuple[str, ...]:
    """The parts whose kernels can run on this machine."""
    import torch

    if torch.cuda.is_available():
        return PARTS
    return INTERPRETER_PARTS if os.environ.get("TRITON_INTERPRET") == "1" else ()


def patch_function(model: Any) -> Any:
    """Liger's ``apply_liger_kernel_to_<family>`` for this model, or a config error naming the families."""
    from liger_kernel.transformers.monkey_patch import MODEL_TYPE_TO_APPLY_LIGER_FN

    model_type = getattr(model.config, "model_type", None)
    if model_type not in MODEL_TYPE_TO_APPLY_LIGER_FN:
        raise ConfigError(f"{WHO} has no kernels for model type '{model_type}'; it supports "
                          f"{', '.join(sorted(MODEL_TYPE_TO_APPLY_LIGER_FN))}: drop {WHO} or use kernels=ft")
    return MODEL_TYPE_TO_APPLY_LIGER_FN[model_type]


def restore(module: Any, saved: dict[str, Any]) -> None:
    """Put back the module attributes Liger replaced (and remove the ones it added)."""
    for name, value in saved.items():
        if value is _ABSENT:
            delattr(module, name)
        else:
            setattr(module, name, value)


_ABSENT = object()


@hookimpl
def prepare_model(ctx: RunContext) -> None:
    import inspect

    options = ctx.cfg.kernels
    chosen = [part for part in PARTS if getattr(options, part)]
    here = runnable_parts()
    left_out = [part for part in chosen if part not in here]
    if left_out:
        log.warning("%s: no GPU here, so Triton cannot run Liger's %s; %s left out and the model's own layers run "
                    "(TRITON_INTERPRET=1 runs %s, slowly, on the CPU)", WHO, ", ".join(left_out),
                    "it is" if len(left_out) == 1 else "they are", " and ".join(INTERPRETER_PARTS))
    applied = {part: part in chosen and part in here for part in PARTS}
    apply = patch_function(ctx.model)
    accepted = inspect.signature(apply).parameters
    module = sys.modules[type(ctx.model).__module__]
    before = dict(vars(module))
    apply(model=ctx.model, **{part: on for part, on in applied.items() if part in accepted})
    changed = {name: before.get(name, _ABSENT) for name, value in vars(module).items()
               if before.get(name, _ABSENT) is not value}
    ctx.add_cleanup(lambda: restore(module, changed))
    ctx.state(LigerState).applied = applied
    log.info("%s: %s", WHO, ", ".join(part for part, on in applied.items() if on) or "no part applied")


@hookimpl
def loss(ctx: RunContext, call: Any) -> Any:
    state = ctx.state(LigerState)
    if call.need_outputs and state.applied["fused_linear_cross_entropy"]:
        if not state.warned_logits:
            state.warned_logits = True
            log.warning("%s: a loss term (method=%s) needs the logits, so this run builds them and its cross entropy "
                        "is not fused", WHO, ctx.choices.get("method"))
        call.inputs["skip_logits"] = False
        try:
            return call.method_loss()
        finally:
            call.inputs.pop("skip_logits", None)
    return call.method_loss()


@hookimpl(optionalhook=True)
def axolotl_keys() -> dict[str, Any]:
    """Axolotl's keys for this plugin (ft-axolotl): ``ft_liger/axolotl.py``."""
    from ft_liger.axolotl import AXOLOTL_KEYS

    return AXOLOTL_KEYS
