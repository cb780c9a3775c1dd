"""An ft plugin that adds the benchmark's :class:`StepTimer` through the ``callbacks`` hook.

Loaded by :mod:`bench._harness.ft_launch`, which installs it as a plugin distribution before
calling the real ``ft`` command, so the timed run is ``ft run`` itself plus one callback.
"""

from __future__ import annotations

from typing import Any

from ft import hookimpl
from ft.plugins import PluginInfo

FT_PLUGIN = PluginInfo(name="bench_timing", description="Benchmark step timer (bench/_harness)", always_active=True)


@hookimpl
def callbacks(ctx: Any) -> list[Any]:
    from bench._harness.timing import StepTimer

    return [StepTimer()]
