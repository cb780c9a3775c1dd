"""The causal LM loss from the final hidden states: what every loss kernel shares.

A loss kernel (capability ``loss``) replaces the method's cross entropy with a fused linear cross
entropy that never builds the ``[tokens, vocabulary]`` logits. Everything around the fused function
must match the method's own loss exactly and is the same for every kernel, so it lives here once:
the forward pass that stops before the head (``logits_to_keep`` = no position, through the model's own
``forward`` so that PEFT, DDP wrappers and gradient checkpointing all see an ordinary call), the label
shift, the divisor (``num_items_in_batch``), the trainer's scaling across ranks, and full logits for a
wrapper that asks for them (``call.need_outputs``).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ft.api import IGNORE_INDEX, ConfigError, LossCall, LossResult


@dataclass
class HeadInputs:
    """What a fused linear cross entropy receives for one batch (see :func:`fused_token_loss`)."""

    #: ``[N, H]``: the model's final hidden states (after its last norm), one row per position.
    hidden: Any
    #: ``[V, H]``: the output head's weight (tied to the embeddings or not), and its bias or ``None``.
    weight: Any
    bias: Any
    #: ``[N]``: the next token of each row (labels shifted by one), ``IGNORE_INDEX`` where nothing is trained.
    targets: Any
    #: The model's final logit soft-capping (``config.final_logit_softcapping``, Gemma 2), or ``None``.
    softcap: float | None


#: A fused linear cross entropy: returns the *sum* of the trained rows' losses (a 0-dim tensor).
LinearCrossEntropy = Callable[[HeadInputs], Any]


def _unwrap(model: Any) -> Any:
    """The model inside DDP-style wrappers (``.module``); PEFT models answer for their base themselves."""
    while hasattr(model, "module") and not hasattr(model, "get_output_embeddings"):
        model = model.module
    return model


def output_head(model: Any, who: str) -> Any:
    """The model's output head as a plain ``nn.Linear``; a head an adapter wraps is refused (``who`` names the option)."""
    import torch

    head = _unwrap(model).get_output_embeddings()
    if type(head) is not torch.nn.Linear:
        raise ConfigError(
            f"{who} computes the loss from the output head's weight, but the head is a "
            f"{type(head).__module__}.{type(head).__qualname__} "
            f"(an adapter wraps it, or the model has no plain linear head); drop lm_head from the adapter's "
            f"target_modules / modules_to_save, or drop {who}")
    return head


def check_fusable(model: Any, who: str) -> Any:
    """Fail at start, with one line, when ``model`` cannot serve a fused token loss; return its output head."""
    head = output_head(model, who)
    causal_lm = _unwrap(model)
    causal_lm = causal_lm.get_base_model() if hasattr(causal_lm, "get_base_model") else causal_lm
    if "logits_to_keep" not in inspect.signature(causal_lm.forward).parameters:
        raise ConfigError(
            f"{who} needs a model whose forward takes logits_to_keep (transformers' causal LMs do); "
            f"{type(causal_lm).__name__}.forward does not: drop {who}")
    return head


def fused_token_loss(call: LossCall, linear_ce: LinearCrossEntropy, who: str) -> LossResult:
    """The method's causal LM loss with ``linear_ce`` in place of ``lm_head`` + cross entropy.

    Equal to transformers' ``ForCausalLMLoss`` on the same batch: labels shifted left by one (the last
    position trains nothing), the summed loss divided by ``call.num_items_in_batch`` (or by this
    batch's trained tokens when it is ``None``), times ``call.token_loss_scale``. With no trained token
    the loss is a differentiable 0. ``outputs`` carries full logits only when ``call.need_outputs``.
    """
    import torch

    labels = call.inputs["labels"]
    inputs = {k: v for k, v in call.inputs.items() if k != "labels"}
    nothing = torch.empty(0, dtype=torch.long, device=labels.device)
    outputs = call.model(**inputs, output_hidden_states=True, logits_to_keep=nothing)
    hidden = outputs.hidden_states[-1]
    outputs["hidden_states"] = None  # what the caller did not ask for is not kept alive
    head = output_head(call.model, who)
    softcap = getattr(_unwrap(call.model).config, "final_logit_softcapping", None) or None
    targets = torch.nn.functional.pad(labels, (0, 1), value=IGNORE_INDEX)[..., 1:]
    total = linear_ce(HeadInputs(hidden.reshape(-1, hidden.size(-1)), head.weight, head.bias,
                                 targets.reshape(-1), softcap))
    if call.num_items_in_batch is not None:
        divisor = call.num_items_in_batch
        divisor = divisor.to(total.device) if hasattr(divisor, "to") else divisor
    else:
        divisor = (targets != IGNORE_INDEX).sum().clamp(min=1)
    loss = total / divisor * call.token_loss_scale
    if call.need_outputs:
        logits = head(hidden)
        if softcap:
            logits = softcap * torch.tanh(logits / softcap)
        outputs["logits"] = logits
    return LossResult(loss, outputs if (call.return_outputs or call.need_outputs) else None)
