"""Reward functions contributed through ft's ``reward_functions`` hook.

Installed, they are available to ``method=grpo`` by name, whether or not anything selects this plugin:
``ft run +method=grpo 'method.rewards=[{name: exact_match}, {name: brevity, weight: 0.2, args: {words: 5}}]'``.
Pure Python on purpose: ``ft validate`` imports this module to learn the names.
"""

from __future__ import annotations

from typing import Any

from ft.api import PluginInfo, hookimpl

FT_PLUGIN = PluginInfo(name="reward_brevity", contract="3.0", description="Rewards for GRPO: brevity, no_apology")


def _text(completion: Any) -> str:
    return completion if isinstance(completion, str) else "".join(m.get("content") or "" for m in completion)


def brevity(prompts: list[Any], completions: list[Any], words: int = 8, **columns: Any) -> list[float]:
    """1.0 for an answer of at most ``words`` words, falling linearly to 0.0 at twice as many."""
    scores = []
    for completion in completions:
        count = len(_text(completion).split())
        scores.append(max(0.0, min(1.0, 2.0 - count / words)))
    return scores


def no_apology(prompts: list[Any], completions: list[Any], **columns: Any) -> list[float]:
    """-1.0 for an answer that apologises ("sorry", "I apologize"), else 0.0."""
    return [-1.0 if any(w in _text(c).lower() for w in ("sorry", "apologi")) else 0.0 for c in completions]


@hookimpl
def reward_functions() -> dict[str, Any]:
    return {"brevity": brevity, "no_apology": no_apology}
