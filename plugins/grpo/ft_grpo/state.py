"""What ft-grpo keeps for one run (``ctx.state(GrpoState)``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class GrpoState:
    """The prompts' format, the held-out prompts, and their score before training."""

    format: str = ""
    held_out: list[dict[str, Any]] = field(default_factory=list)
    #: The held-out score before training (``ft_grpo.report.HeldOutScore``), when measured.
    before: Any = None
