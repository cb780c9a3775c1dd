"""The hook ft-grpo adds to ft's contract (``FT_PLUGIN.hookspecs``): named reward functions.

Any installed plugin may implement it, so a plugin can exist only to ship rewards
(``examples/ft-reward-brevity``); the implementation loads when ft-grpo is installed and enabled.
"""

from __future__ import annotations

from typing import Any

from ft.api import hookspec


@hookspec
def reward_functions() -> dict[str, Any]:
    """Contribute named reward functions for online RL methods (``method=grpo``'s ``method.rewards``).

    When: at validation (a reward named in the config must be one of them, or a ``module:function``
    path) and when an RL trainer is built; asked of every installed plugin (``ctx.installed_pm`` at run
    time), selected or not, so a plugin can exist only to ship rewards. Returns: a dict mapping a
    name to a callable with TRL's reward signature ``(prompts, completions, completion_ids, **columns)
    -> list[float | None]``, one score per completion (``None``: does not apply); ``columns`` are the
    dataset's other columns and the options the config gives the reward (docs/grpo.md). Combine:
    collected; the same name from two plugins is an error. Return the callables without importing torch.
    """
