"""Held-out reward before and after training, ``rewards.png``, and the report lines of a GRPO run.

The held-out score is greedy (one completion per prompt, the same every time), so before and after are
comparable: the mean of each reward function, the weighted total, and exact match when the data has a
reference answer (``numeric_match`` for GSM8K, ``exact_match`` otherwise).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class HeldOutScore:
    """Mean rewards of greedy completions for the held-out prompts."""

    total: float
    per_reward: dict[str, float]
    exact_match: float | None
    n: int
    samples: list[dict[str, Any]] = field(default_factory=list)


def generate(model: Any, tokenizer: Any, prompts: list[Any], max_new_tokens: int, batch_size: int = 16,
             progress: str | None = None) -> tuple[list[str], list[list[int]]]:
    """Greedy completions (text and token ids) for ``prompts``; the model's mode and padding side are restored."""
    import torch
    from tqdm.auto import tqdm

    from ft_grpo.data import prompt_text

    was_training, side = model.training, tokenizer.padding_side
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    texts: list[str] = []
    ids: list[list[int]] = []
    model.eval()
    tokenizer.padding_side = "left"
    bar = tqdm(total=len(prompts), desc=progress, unit="prompt", file=sys.stderr, leave=False,
               disable=None if progress else True)
    try:
        for start in range(0, len(prompts), batch_size):
            batch = [prompt_text(tokenizer, p) for p in prompts[start : start + batch_size]]
            encoded = tokenizer(batch, return_tensors="pt", padding=True, add_special_tokens=False)
            encoded = {k: v.to(model.device) for k, v in encoded.items()}
            with torch.inference_mode():
                output = model.generate(**encoded, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=pad_id,
                                        eos_token_id=tokenizer.eos_token_id)
            for row in output[:, encoded["input_ids"].shape[1]:]:
                row = [int(t) for t in row if int(t) != pad_id]
                ids.append(row)
                texts.append(tokenizer.decode(row, skip_special_tokens=True).strip())
            bar.update(len(batch))
    finally:
        bar.close()
        tokenizer.padding_side = side
        model.train(was_training)
    return texts, ids


def score_held_out(model: Any, tokenizer: Any, rows: list[dict[str, Any]], funcs: list[Any], weights: list[float],
                   max_new_tokens: int, fmt: str, progress: str | None = None) -> HeldOutScore:
    """Greedy completions for ``rows`` scored by every reward function."""
    from ft_grpo.rewards import exact_match, numeric_match

    prompts = [r["prompt"] for r in rows]
    texts, ids = generate(model, tokenizer, prompts, max_new_tokens, progress=progress)
    chat = bool(prompts) and isinstance(prompts[0], list)
    completions = [[{"role": "assistant", "content": t}] for t in texts] if chat else texts
    columns: dict[str, Any] = {k: [r.get(k) for r in rows] for k in rows[0] if k != "prompt"} if rows else {}
    per_reward, totals = {}, [0.0] * len(rows)
    for func, weight in zip(funcs, weights):
        values = func(prompts=prompts, completions=completions, completion_ids=ids, **columns)
        usable = [v for v in values if v is not None]
        per_reward[func.__name__] = sum(usable) / len(usable) if usable else 0.0
        totals = [t + weight * (v or 0.0) for t, v in zip(totals, values)]
    exact = None
    if "answer" in columns:
        matcher = numeric_match if fmt == "gsm8k" else exact_match
        hits = matcher(prompts, completions, **columns)
        exact = sum(hits) / len(hits) if hits else 0.0
    samples = [{"prompt": (p[-1]["content"] if isinstance(p, list) else p), "completion": t,
                "answer": r.get("answer")} for p, t, r in zip(prompts[:3], texts[:3], rows[:3])]
    return HeldOutScore(sum(totals) / len(totals) if totals else 0.0, per_reward, exact, len(rows), samples)


def plot_rewards(records: list[dict[str, Any]], out: Path, title: str) -> bool:
    """Mean reward per function and in total against step; False when nothing was logged."""
    from ft.api import plot_curves

    names = sorted({k for r in records for k in r if k.startswith("rewards/") and k.endswith("/mean")})
    curves = [(key.split("/")[1], [(r["step"], r[key]) for r in records if isinstance(r.get(key), (int, float))])
              for key in names]
    total = [(r["step"], r["reward"]) for r in records if isinstance(r.get("reward"), (int, float))]
    curves = [c for c in [("total", total), *curves] if c[1]]
    return plot_curves(curves, out, title=title, ylabel="mean reward")


def report_lines(before: HeldOutScore | None, after: HeldOutScore) -> list[str]:
    """The held-out table printed at the end of the run."""
    width = max([len("total reward"), *(len(n) for n in after.per_reward)])
    head = f"  {'':<{width}}{'before':>9}{'after':>9}"
    rows = [("total reward", before.total if before else None, after.total)]
    rows += [(name, before.per_reward.get(name) if before else None, value) for name, value in after.per_reward.items()]
    if after.exact_match is not None:
        rows.append(("exact match", before.exact_match if before else None, after.exact_match))
    fmt = lambda v: f"{v:>9.3f}" if isinstance(v, (int, float)) else f"{'-':>9}"  # noqa: E731
    lines = [f"GRPO held-out prompts ({after.n}, greedy):", head]
    lines += [f"  {name:<{width}}{fmt(b)}{fmt(a)}" for name, b, a in rows]
    for sample in after.samples[:2]:
        lines.append(f"  prompt: {sample['prompt'][:70]!r}\n    after: {sample['completion'][:70]!r}"
                     + (f"  (answer {str(sample['answer'])[-30:]!r})" if sample.get("answer") is not None else ""))
    return lines
