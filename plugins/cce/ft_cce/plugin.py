"""ft-cce's hooks: ``kernels=cce`` computes the method's token loss with Apple's Cut Cross Entropy.

* ``loss`` (capability ``loss``, methods with the ``token_loss`` trait): ``ft.api.fused_token_loss`` runs
  the model up to its final hidden states; ``cut_cross_entropy.linear_cross_entropy`` takes it from there
  (the PyPI release has no model patcher and none is needed: nothing is patched).
* ``pre_model_load``: the implementation is chosen before the model loads: ``cce`` (Triton) needs a GPU;
  without one, ``auto`` takes the library's ``torch_compile`` path and says once that it saves little.
* ``post_model_load``: a head an adapter wraps, or one with a bias (CCE takes none), is refused.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from ft.api import ConfigError, PluginInfo, RunContext, hookimpl

FT_PLUGIN = PluginInfo(
    name="cce", contract="3.0",
    description="Apple's Cut Cross Entropy (kernels=cce): the token loss without the logits",
    capabilities=("loss",),
    requires_traits=("token_loss",),
)

WHO = "kernels=cce"
log = logging.getLogger("ft")


@dataclass
class CceState:
    """The Cut Cross Entropy implementation this run uses, and whether the full-logits warning was given."""

    impl: str = "cce"
    warned_logits: bool = False


@hookimpl
def config_schemas() -> dict[str, type]:
    from ft_cce.schema import CceConfig

    return {"kernels/cce": CceConfig}


@hookimpl
def validate_config(cfg: Any, choices: dict[str, str | None]) -> None:
    if choices.get("kernels") != "cce":
        return
    eps = cfg.kernels.filter_eps
    if eps is not None and eps not in ("high", "low"):
        try:
            float(eps)
        except ValueError:
            raise ConfigError(f"kernels.filter_eps={eps} is not valid: expected high, low, a number or null") from None


def filter_eps(value: str | None) -> float | str | None:
    return value if value in (None, "high", "low") else float(value)


@hookimpl
def pre_model_load(ctx: RunContext) -> None:
    import torch

    impl = ctx.cfg.kernels.impl
    on_gpu = torch.cuda.is_available()
    if impl == "cce" and not on_gpu:
        raise ConfigError("kernels.impl=cce runs Triton kernels and needs a GPU; use kernels.impl=auto or "
                          "torch_compile here")
    if impl == "auto":
        impl = "cce" if on_gpu else "torch_compile"
    if impl == "torch_compile" and not on_gpu:
        log.warning("kernels=cce: no GPU here, so Cut Cross Entropy runs its torch_compile path, which builds "
                    "the logits and saves little memory (kernels=ft saves most of it on a CPU)")
    ctx.state(CceState).impl = impl


@hookimpl
def post_model_load(ctx: RunContext) -> None:
    from ft_kernels.token_loss import check_fusable

    head = check_fusable(ctx.model, WHO)
    if head.bias is not None:
        raise ConfigError(f"{WHO} takes an output head without a bias, and this model's head has one; drop {WHO}")
    log.info("kernels=cce: Cut Cross Entropy (%s)", ctx.state(CceState).impl)


@hookimpl
def loss(ctx: RunContext, call: Any) -> Any:
    from cut_cross_entropy import linear_cross_entropy

    from ft_kernels.token_loss import fused_token_loss

    options, state = ctx.cfg.kernels, ctx.state(CceState)
    if call.need_outputs and not state.warned_logits:
        state.warned_logits = True
        log.warning("%s: a loss term (method=%s) needs the logits, so they are built for it", WHO, ctx.choices.get("method"))
    extra = {"filter_eps": filter_eps(options.filter_eps)} if state.impl == "cce" else {}

    def fused(head: Any) -> Any:
        return linear_cross_entropy(head.hidden, head.weight, head.targets, softcap=options.softcap or head.softcap,
                                    reduction="sum", impl=state.impl, **extra)

    return fused_token_loss(call, fused, WHO)


@hookimpl(optionalhook=True)
def axolotl_keys() -> dict[str, Any]:
    """Axolotl's keys for this plugin (ft-axolotl): ``ft_cce/axolotl.py``."""
    from ft_cce.axolotl import AXOLOTL_KEYS

    return AXOLOTL_KEYS
