"""Generation by iterative unmasking (LLaDA's sampler).

The response starts as ``gen_length`` mask tokens after the prompt. It is cut into blocks of
``block_length`` tokens, generated left to right (semi-autoregressive; one block of the whole length is
fully parallel), and each block gets ``steps / number of blocks`` steps. At every step the model predicts
every masked position at once (bidirectional attention); the block's still-masked positions are ranked
by the confidence of their prediction (``low_confidence`` remasking: the probability of the predicted
token; ``random``: a random order) and the top ``k`` are committed, where ``k`` spreads the block's tokens
as evenly as possible over its steps (the first ``n % steps`` steps commit one more). Committed tokens are
never changed again, so after the last step no mask token is left. ``temperature`` 0 takes the most likely
token; above 0, tokens are sampled (Gumbel-max on logits / temperature). ft cuts the answer at the first
end-of-sequence token.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


def commits_per_step(n_tokens: int, steps: int) -> list[int]:
    """How many of ``n_tokens`` masked tokens each of ``steps`` steps commits (even, larger first)."""
    steps = max(1, min(steps, n_tokens)) if n_tokens else 1
    base, extra = divmod(n_tokens, steps)
    return [base + (1 if i < extra else 0) for i in range(steps)]


@dataclass
class SamplerOptions:
    gen_length: int = 32
    steps: int = 32
    block_length: int = 32
    temperature: float = 0.0
    remasking: str = "low_confidence"  # or "random"
    shift_logits: bool = True
    seed: int | None = None


@dataclass
class Trace:
    """What each step did: how many tokens it committed, and how many masks were left after it."""

    committed: list[int] = field(default_factory=list)
    masks_left: list[int] = field(default_factory=list)


def generate(model: Any, prompt_ids: list[list[int]], mask_id: int, options: SamplerOptions, pad_id: int,
             trace: Trace | None = None) -> list[list[int]]:
    """Response token ids for each prompt (left-padded into one batch); ``trace`` records the steps."""
    import torch

    from ft_diffusion.attention import forward
    from ft_diffusion.noise import aligned_logits

    device = next(model.parameters()).device
    width = max(len(p) for p in prompt_ids)
    batch = len(prompt_ids)
    total = width + options.gen_length
    x = torch.full((batch, total), pad_id, dtype=torch.long, device=device)
    attention = torch.zeros((batch, total), dtype=torch.long, device=device)
    for row, ids in enumerate(prompt_ids):  # left padding: every response starts at the same column
        x[row, width - len(ids):width] = torch.tensor(ids, device=device)
        attention[row, width - len(ids):] = 1
    x[:, width:] = mask_id
    positions = (attention.cumsum(-1) - 1).clamp(min=0)
    generator = torch.Generator().manual_seed(options.seed) if options.seed is not None else None
    block = max(1, min(options.block_length, options.gen_length))
    n_blocks = -(-options.gen_length // block)
    steps_per_block = max(1, options.steps // n_blocks)
    last = options.gen_length + (1 if options.shift_logits else 0)  # the head on the answer's columns (and the one before, shifted)
    was_training = model.training
    model.eval()
    try:
        for b in range(n_blocks):
            start, end = width + b * block, min(width + (b + 1) * block, total)
            for k in commits_per_step(end - start, steps_per_block):
                with torch.inference_mode():
                    logits = aligned_logits(forward(model, x, attention, positions, last=last), options.shift_logits)
                    logits = logits[:, -options.gen_length:].float()
                if options.temperature > 0:
                    noise = torch.rand(logits.shape, generator=generator).to(device).clamp(min=1e-10)
                    chosen = (logits / options.temperature - torch.log(-torch.log(noise))).argmax(-1)
                else:
                    chosen = logits.argmax(-1)
                if options.remasking == "random":
                    confidence = torch.rand(chosen.shape, generator=generator).to(device)
                else:
                    confidence = torch.softmax(logits, -1).gather(-1, chosen[..., None]).squeeze(-1)
                answer = x[:, width:]
                in_block = torch.zeros_like(answer, dtype=torch.bool)
                in_block[:, start - width:end - width] = True
                candidates = (answer == mask_id) & in_block
                confidence = confidence.masked_fill(~candidates, -1.0)
                top = confidence.topk(k, dim=-1).indices
                commit = torch.zeros_like(candidates).scatter(1, top, True) & candidates
                x[:, width:] = torch.where(commit, chosen, answer)
                if trace is not None:
                    trace.committed.append(int(commit.sum(-1).max()))
                    trace.masks_left.append(int((x[:, width:] == mask_id).sum()))
    finally:
        model.train(was_training)
    return [row.tolist() for row in x[:, width:]]

