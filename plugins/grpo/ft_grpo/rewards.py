"""ft-grpo's reward library, and how a config's ``method.rewards`` become TRL reward functions.

A reward function has TRL's signature: ``fn(prompts, completions, completion_ids, **columns) -> list``
of floats (or ``None`` for "does not apply"), one per completion. ``columns`` are the dataset's other
columns (``answer``...) for each completion's prompt, and ``trainer_state``. Completions are strings for
plain prompts and ``[{"role": "assistant", "content": ...}]`` for chat prompts; :func:`text` reads both.

Any installed plugin contributes named rewards through the ``reward_functions`` hook (ft-grpo's own
library comes the same way); a config may also name a function by import path (``my_rewards:score``,
importable from the working directory). Options of a reward (``args``) are passed as keyword arguments.
"""

from __future__ import annotations

import importlib
import math
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")


def text(completion: Any) -> str:
    """The text of a completion: a string, or the content of chat messages."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, list):
        return "".join(m.get("content") or "" for m in completion if isinstance(m, dict))
    return str(completion)


def _normalise(value: str) -> str:
    value = " ".join(value.split())
    return re.sub(r"\s*,\s*", ", ", value).strip()


def exact_match(prompts: list[Any], completions: list[Any], column: str = "answer", **kwargs: Any) -> list[float]:
    """1.0 when the completion equals the reference column (whitespace and comma spacing ignored), else 0.0."""
    references = kwargs[column]
    return [float(_normalise(text(c)) == _normalise(str(r))) for c, r in zip(completions, references)]


def _number(value: str) -> float | None:
    try:
        return float(value.replace(",", ""))
    except ValueError:
        return None


def reference_number(reference: str) -> float | None:
    """The number a reference states: after GSM8K's ``####`` when present, else its last number."""
    tail = reference.split("####")[-1]
    found = _NUMBER.findall(tail)
    return _number(found[-1]) if found else None


def numeric_match(prompts: list[Any], completions: list[Any], column: str = "answer", **kwargs: Any) -> list[float]:
    """1.0 when the completion's final number (after ``####`` if it writes one) equals the reference's
    (GSM8K's ``#### N``), else 0.0."""
    scores = []
    for completion, reference in zip(completions, kwargs[column]):
        expected = reference_number(str(reference))
        said = reference_number(text(completion))
        scores.append(float(expected is not None and said is not None and math.isclose(said, expected, abs_tol=1e-6)))
    return scores


def regex_format(prompts: list[Any], completions: list[Any], pattern: str = r"^.*$", **kwargs: Any) -> list[float]:
    """1.0 when the whole completion matches ``pattern`` (``re.fullmatch``, DOTALL), else 0.0."""
    compiled = re.compile(pattern, re.DOTALL)
    return [float(compiled.fullmatch(text(c).strip()) is not None) for c in completions]


def length_penalty(prompts: list[Any], completions: list[Any], completion_ids: list[list[int]] | None = None,
                   target: int = 32, **kwargs: Any) -> list[float]:
    """0 up to ``target`` tokens, then minus the fraction of tokens beyond it (-1 at twice the target)."""
    lengths = [len(ids) for ids in completion_ids] if completion_ids is not None else [len(text(c).split()) for c in completions]
    return [-max(0.0, (n - target) / max(target, 1)) for n in lengths]


def _numbers(value: str) -> list[int]:
    return [int(n) for n in re.findall(r"-?\d+", value)]


def sort_partial(prompts: list[Any], completions: list[Any], column: str = "answer", **kwargs: Any) -> list[float]:
    """The default task's partial credit: the fraction of positions holding the right number, over the longer
    of the answer and the expected list, scaled to 0.5 unless the answer is exactly right (then 1.0).

    A model that echoes the list or leaves out a number earns a little; only the exact list earns 1."""
    scores = []
    for completion, reference in zip(completions, kwargs[column]):
        said, expected = text(completion), str(reference)
        if _normalise(said) == _normalise(expected):
            scores.append(1.0)
            continue
        got, want = _numbers(said), _numbers(expected)
        hits = sum(a == b for a, b in zip(got, want))
        scores.append(0.5 * hits / max(len(got), len(want), 1))
    return scores


#: ft-grpo's own rewards, contributed through the ``reward_functions`` hook like any plugin's.
LIBRARY: dict[str, Callable[..., list[float]]] = {
    "exact_match": exact_match,
    "numeric_match": numeric_match,
    "regex_format": regex_format,
    "length_penalty": length_penalty,
    "sort_partial": sort_partial,
}


def import_reward(path: str) -> Callable[..., Any]:
    """``module:function`` imported with the working directory on the path (a user's own file)."""
    module_name, _, attribute = path.partition(":")
    cwd = str(Path.cwd())
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    module = importlib.import_module(module_name)
    function = getattr(module, attribute, None)
    if not callable(function):
        raise AttributeError(f"module '{module_name}' has no function '{attribute}'")
    return function


def resolve(entry: Any, available: dict[str, Callable[..., Any]]) -> Callable[..., Any]:
    """One configured reward as a TRL reward function named after the config entry (metric names
    ``rewards/<name>/mean``), its ``args`` bound."""
    name = entry.name
    function = import_reward(name) if ":" in name else available[name]
    args = dict(entry.args or {})
    label = name.split(":")[-1]

    def reward(prompts: list[Any], completions: list[Any], **kwargs: Any) -> list[Any]:
        return function(prompts, completions, **{**kwargs, **args})

    reward.__name__ = label
    reward.__qualname__ = label
    return reward


def weighted_total(scores: dict[str, list[float | None]], weights: dict[str, float]) -> list[float]:
    """Per completion, the weighted sum of the rewards that apply (``None`` = does not apply)."""
    count = len(next(iter(scores.values()))) if scores else 0
    total = []
    for i in range(count):
        parts = [weights[name] * value for name, values in scores.items() if (value := values[i]) is not None]
        total.append(sum(parts))
    return total
