"""ft: a plugin-first framework for fine-tuning large language models.

Plugin authors import from :mod:`ft.api` (hooks, declarations, errors, context types, helpers);
the hook contract is :mod:`ft.hookspecs`. ``ft.hookimpl`` and ``ft.PluginInfo`` stay here as well.
"""

from __future__ import annotations

import pluggy

from ft.plugins import PluginInfo

__version__ = "0.1.0"

hookimpl = pluggy.HookimplMarker("ft")

__all__ = ["PluginInfo", "__version__", "hookimpl"]
