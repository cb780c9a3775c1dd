"""Distillation losses over next-token distributions, computed in chunks of positions.

Conventions (the same as the kernel's ``loss`` hook): ``labels`` are not shifted; position ``i`` of the
logits predicts token ``i + 1``, so a position trains when ``labels[:, i + 1] != -100``. The loss is summed
over trained positions and divided by ``num_items`` (the trained tokens of the whole optimizer step, as
``num_items_in_batch``), so it averages exactly like the cross entropy it is mixed with.

Full distributions (online teacher):
    forward KL  KL(p_t || p_s) = sum_v p_t (log p_t - log p_s)      (mode-covering, the default)
    reverse KL  KL(p_s || p_t)                                      (mode-seeking)
    JSD(beta)   beta KL(p_t || m) + (1 - beta) KL(p_s || m),  m = beta p_t + (1 - beta) p_s
Teacher's top-k support (offline): the teacher's k log-probabilities, renormalised over the k tokens
(``renormalize``), against the student's log-probabilities of the same tokens; only forward KL is exact
there (it needs p_t alone, zero outside the support); reverse KL and JSD need the student's mass outside
the support, so they are computed on the support, renormalised for both (an approximation).
All distributions are taken at temperature T, and the loss is multiplied by T^2 (Hinton et al.) so its
gradient scale does not change with T.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

IGNORE_INDEX = -100
KINDS = ("forward_kl", "reverse_kl", "jsd")


def trained_positions(labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(batch, position)`` indices of the positions whose next token is trained."""
    nxt = torch.full_like(labels, IGNORE_INDEX)
    nxt[:, :-1] = labels[:, 1:]
    rows, positions = torch.nonzero(nxt != IGNORE_INDEX, as_tuple=True)
    return rows, positions


def divergence(student_logp: torch.Tensor, teacher_logp: torch.Tensor, kind: str, beta: float = 0.5) -> torch.Tensor:
    """Per-position divergence (summed over the last axis) between two log-distributions, fp32."""
    if kind == "forward_kl":
        return (teacher_logp.exp() * (teacher_logp - student_logp)).sum(-1)
    if kind == "reverse_kl":
        return (student_logp.exp() * (student_logp - teacher_logp)).sum(-1)
    if kind == "jsd":
        if beta <= 0.0:
            return divergence(student_logp, teacher_logp, "reverse_kl")
        if beta >= 1.0:
            return divergence(student_logp, teacher_logp, "forward_kl")
        mixture = torch.logsumexp(torch.stack([teacher_logp + math.log(beta), student_logp + math.log(1 - beta)]), dim=0)
        return (beta * (teacher_logp.exp() * (teacher_logp - mixture)).sum(-1)
                + (1 - beta) * (student_logp.exp() * (student_logp - mixture)).sum(-1))
    raise ValueError(f"unknown divergence {kind!r}; expected one of {', '.join(KINDS)}")


def full_kd_loss(student_logits: torch.Tensor, teacher_logits_at: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
                 labels: torch.Tensor, num_items: float | torch.Tensor | None, kind: str = "forward_kl",
                 temperature: float = 1.0, beta: float = 0.5, chunk_size: int = 1024) -> torch.Tensor:
    """Distillation loss on full distributions, ``chunk_size`` trained positions at a time.

    ``teacher_logits_at(batch_index, position_index)`` returns the teacher's logits at those positions
    (the caller projects the teacher's hidden states chunk by chunk), so teacher logits for the whole
    batch never exist in fp32 at once.
    """
    rows, cols = trained_positions(labels)
    total = student_logits.new_zeros((), dtype=torch.float32)
    for start in range(0, rows.numel(), chunk_size):
        r, c = rows[start:start + chunk_size], cols[start:start + chunk_size]
        student = F.log_softmax(student_logits[r, c].float() / temperature, dim=-1)
        with torch.no_grad():
            teacher = F.log_softmax(teacher_logits_at(r, c).float() / temperature, dim=-1)
        total = total + divergence(student, teacher, kind, beta).sum()
    return total * temperature**2 / _count(num_items, rows.numel())


def topk_kd_loss(student_logits: torch.Tensor, topk_ids: torch.Tensor, topk_logprobs: torch.Tensor,
                 labels: torch.Tensor, num_items: float | torch.Tensor | None, kind: str = "forward_kl",
                 temperature: float = 1.0, beta: float = 0.5, renormalize: bool = True,
                 chunk_size: int = 1024) -> torch.Tensor:
    """Distillation loss on the teacher's top-k support.

    ``topk_ids`` and ``topk_logprobs`` are ``[batch, seq, k]`` (the teacher's log-probabilities at T = 1 of
    its k most likely next tokens at each position; positions that do not train may hold anything).
    """
    rows, cols = trained_positions(labels)
    total = student_logits.new_zeros((), dtype=torch.float32)
    for start in range(0, rows.numel(), chunk_size):
        r, c = rows[start:start + chunk_size], cols[start:start + chunk_size]
        ids = topk_ids[r, c].long()
        teacher = topk_logprobs[r, c].float() / temperature
        teacher = teacher - torch.logsumexp(teacher, dim=-1, keepdim=True) if renormalize else teacher
        student_full = F.log_softmax(student_logits[r, c].float() / temperature, dim=-1)
        student = student_full.gather(-1, ids)
        if kind != "forward_kl":  # the student's mass outside the support is unknown to the teacher: renormalise both
            student = student - torch.logsumexp(student, dim=-1, keepdim=True)
        total = total + divergence(student, teacher, kind, beta).sum()
    return total * temperature**2 / _count(num_items, rows.numel())


def _count(num_items: float | torch.Tensor | None, fallback: int) -> float | torch.Tensor:
    if num_items is None:
        return max(fallback, 1)
    return num_items.clamp_min(1) if torch.is_tensor(num_items) else max(float(num_items), 1.0)
