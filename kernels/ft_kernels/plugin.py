"""ft-kernels' hooks: ``kernels=ft`` computes the method's token loss with ft's fused linear cross entropy.

* ``loss`` (capability ``loss``, methods with the ``token_loss`` trait): ``ft.api.fused_token_loss`` runs
  the model up to its final hidden states and this distribution's ``linear_cross_entropy`` takes it from
  there; preference methods and others that compute their own logits are refused at ``ft validate``.
* ``pre_model_load``: ``backend=triton`` without a GPU is an error before the model loads (unless
  ``TRITON_INTERPRET=1``, Triton's CPU interpreter, slow but exact).
* ``post_model_load``: a head that an adapter wraps, or a model without ``logits_to_keep``, is refused.
Nothing is patched.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any

from ft.api import ConfigError, PluginInfo, RunContext, hookimpl

FT_PLUGIN = PluginInfo(
    name="kernels", contract="3.0",
    description="ft's fused linear cross entropy (kernels=ft): the token loss without the logits; torch or Triton",
    capabilities=("loss",),
    requires_traits=("token_loss",),
)

WHO = "kernels=ft"
log = logging.getLogger("ft")


@dataclass
class KernelsState:
    """Whether this run already warned that a wrapper asked for the full logits."""

    warned_logits: bool = False


@hookimpl
def config_schemas() -> dict[str, type]:
    from ft_kernels.schema import FusedCrossEntropyConfig

    return {"kernels/ft": FusedCrossEntropyConfig}


def triton_can_run() -> bool:
    """A CUDA device, or Triton's interpreter (``TRITON_INTERPRET=1``), and Triton installed."""
    import torch

    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    return torch.cuda.is_available() or os.environ.get("TRITON_INTERPRET") == "1"


@hookimpl
def pre_model_load(ctx: RunContext) -> None:
    options = ctx.cfg.kernels
    if options.backend == "triton" and not triton_can_run():
        raise ConfigError("kernels.backend=triton needs a GPU and Triton (or TRITON_INTERPRET=1 to run it, slowly, "
                          "on the CPU); use kernels.backend=auto or torch here")
    ctx.state(KernelsState).warned_logits = False


@hookimpl
def post_model_load(ctx: RunContext) -> None:
    from ft_kernels.token_loss import check_fusable

    check_fusable(ctx.model, WHO)
    options = ctx.cfg.kernels
    log.info("kernels=ft: fused linear cross entropy (backend %s, %d tokens a chunk)", options.backend,
             options.chunk_size)


@hookimpl
def loss(ctx: RunContext, call: Any) -> Any:
    from ft_kernels.linear_ce import linear_cross_entropy
    from ft_kernels.token_loss import fused_token_loss

    options = ctx.cfg.kernels
    if call.need_outputs and not ctx.state(KernelsState).warned_logits:
        ctx.state(KernelsState).warned_logits = True
        log.warning("kernels=ft: a loss term (method=%s) needs the logits, so they are built for it; the fused "
                    "loss still saves the cross entropy's own copies", ctx.choices.get("method"))

    def fused(head: Any) -> Any:
        return linear_cross_entropy(head.hidden, head.weight, head.targets, head.bias,
                                    softcap=options.softcap or head.softcap, z_loss=options.z_loss,
                                    label_smoothing=options.label_smoothing, chunk_size=options.chunk_size,
                                    backend=options.backend, recompute=options.recompute)

    return fused_token_loss(call, fused, WHO)
