"""The forward (noising) process and the loss of masked diffusion language models (LLaDA).

For each sequence a time ``t ~ U(0, 1)`` is drawn and turned into a mask probability ``p`` by the noise
schedule (``linear``: ``p = (1 - eps) t + eps``; ``cosine``: ``p = (1 - eps)(1 - cos(pi t / 2)) + eps``),
clamped to ``[min_mask_ratio, max_mask_ratio]``. Every *noisable* token (a trained label: the whole text
in pretraining, only the response in SFT; never padding) is replaced by the mask token with probability
``p``, independently. The model sees the noisy sequence with bidirectional attention and predicts the
original token at every masked position; the loss is the cross entropy on masked tokens, each weighted by
``1 / p`` (``importance_weighting``: an unbiased estimate of the ELBO's likelihood bound), then normalised:

* ``noisable_tokens`` (default): divided by the number of noisable tokens in the batch (LLaDA's
  pretraining loss, ``1 / L`` per sequence when every token is noisable);
* ``answer_length``: each sequence's sum divided by its own number of noisable tokens, then averaged over
  sequences (LLaDA's SFT loss: a long answer weighs as much as a short one).

Position convention (``shift_logits``): a model adapted from an autoregressive checkpoint keeps predicting
"the next token", so the logits at position ``i - 1`` predict the token at ``i`` (Dream, Axolotl); a model
trained from scratch predicts the token at ``i`` from position ``i`` (LLaDA).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

IGNORE_INDEX = -100


def mask_probability(t: Any, eps: float, schedule: str, low: float = 0.0, high: float = 1.0) -> Any:
    """``p(t)`` of the schedule, clamped to ``[low, high]``."""
    import torch

    if schedule == "cosine":
        ramp = 1 - torch.cos(t * math.pi / 2)
    else:
        ramp = t
    return ((1 - eps) * ramp + eps).clamp(min=low, max=high)


def segment_ids(position_ids: Any | None, shape: tuple[int, int], device: Any) -> Any:
    """Which original row each position belongs to: 0 everywhere for ordinary rows; in a packed batch
    (position ids restarting at 0 where a row starts) one id per row of the pack."""
    import torch

    if position_ids is None:
        return torch.zeros(shape, dtype=torch.long, device=device)
    return (position_ids == 0).long().cumsum(-1) - 1


@dataclass
class Noised:
    """One noised batch: the model's input, which positions were masked, and each position's ``p``."""

    input_ids: Any
    masked: Any  # bool [B, L]
    noisable: Any  # bool [B, L]
    p: Any  # float [B, L]: the mask probability of each position's sequence

    def columns_from(self, first: int) -> Noised:
        """The same batch from column ``first`` on (the columns whose logits were computed)."""
        if not first:
            return self
        return Noised(self.input_ids[:, first:], self.masked[:, first:], self.noisable[:, first:], self.p[:, first:])


def noise_batch(input_ids: Any, labels: Any, mask_id: int, eps: float, schedule: str, low: float, high: float,
                generator: Any = None, t: Any = None, position_ids: Any = None) -> Noised:
    """Mask each noisable token of each sequence with its sequence's probability ``p(t)``.

    A packed row of several sequences draws one ``t`` per sequence. ``t`` may be given (evaluation at a
    fixed time): a scalar or one value per batch row.
    """
    import torch

    noisable = labels != IGNORE_INDEX
    segments = segment_ids(position_ids, tuple(input_ids.shape), input_ids.device)
    n_segments = int(segments.max().item()) + 1 if segments.numel() else 1
    if t is None:
        times = torch.rand((input_ids.shape[0], n_segments), generator=generator, device="cpu").to(input_ids.device)
    else:
        times = torch.as_tensor(t, dtype=torch.float32, device=input_ids.device)
        times = times.reshape(-1, 1).expand(input_ids.shape[0], n_segments) if times.dim() <= 1 else times
    p_segment = mask_probability(times, eps, schedule, low, high)
    p = torch.gather(p_segment, 1, segments.clamp(min=0))
    draws = torch.rand(input_ids.shape, generator=generator, device="cpu").to(input_ids.device)
    masked = noisable & (draws < p)
    return Noised(torch.where(masked, torch.full_like(input_ids, mask_id), input_ids), masked, noisable, p)


def aligned_logits(logits: Any, shift: bool) -> Any:
    """Logits aligned with the tokens they predict: ``shift`` moves them one position right (position
    ``i - 1`` predicts token ``i``; the first position then has no prediction and is never trained)."""
    import torch

    if not shift:
        return logits
    return torch.cat([logits[:, :1] * 0, logits[:, :-1]], dim=1)


def diffusion_loss(logits: Any, targets: Any, noised: Noised, shift: bool, importance_weighting: bool,
                   normalization: str) -> tuple[Any, dict[str, Any]]:
    """The weighted masked-token cross entropy, and what was measured (for the logs).

    With ``shift`` the first position cannot be predicted and is left out of the masked set.
    """
    import torch

    logits = aligned_logits(logits, shift).float()
    masked = noised.masked.clone()
    if shift:
        masked[:, 0] = False
    per_token = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1),
                                                  reduction="none").reshape(targets.shape)
    weights = masked.float() / (noised.p if importance_weighting else torch.ones_like(noised.p))
    weighted = per_token * weights
    noisable = noised.noisable.float()
    if normalization == "answer_length":
        per_sequence = weighted.sum(-1) / noisable.sum(-1).clamp(min=1)
        has = noisable.sum(-1) > 0
        loss = per_sequence[has].mean() if has.any() else weighted.sum() * 0
    else:
        loss = weighted.sum() / noisable.sum().clamp(min=1)
    with torch.no_grad():
        hits = ((logits.argmax(-1) == targets) & masked).sum()
        stats = {"masked": masked.sum(), "hits": hits, "noisable": noised.noisable.sum()}
    return loss, stats
