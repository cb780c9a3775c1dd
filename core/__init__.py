"""ft: a plugin-first framework for fine-tuning large language models.

Plugin authors need only two names from here: :data:`hookimpl` to mark hook implementations and
:class:`PluginInfo` to declare what a plugin provides, requires and conflicts with.
"""

from __future__ import annotations

import pluggy

from ft.plugins import PluginInfo

__version__ = "0.1.0"

hookimpl = pluggy.HookimplMarker("ft")

__all__ = ["PluginInfo", "__version__", "hookimpl"]
