"""An Axolotl plugin (its ``plugins:`` config list) that adds the benchmark's :class:`StepTimer`.

Imported only inside Axolotl's own virtual environment; it uses Axolotl's public plugin base class
and copies nothing of Axolotl.
"""

from __future__ import annotations

from typing import Any

from axolotl.integrations.base import BasePlugin


class StepTimerPlugin(BasePlugin):
    """Give the trainer the same step timer that ft and the transformers baseline get."""

    def add_callbacks_pre_trainer(self, cfg: Any, model: Any) -> list[Any]:
        from bench._harness.timing import StepTimer

        return [StepTimer()]
