"""The hook ft-sweeps calls on the other installed plugins (``PluginInfo.hookspecs``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ft.api import hookspec


@hookspec
def post_sweep(sweep_dir: Path, results: list[Any], objective: str | None, direction: str) -> None:
    """Report on a finished sweep (``ft run -m``): a table, a plot, the best job, a message.

    When: after the last job of ``ft run -m`` ended (finished or failed), in the launching process, on every
    installed plugin, after ft-sweeps wrote its own summary. Receives: the sweep folder, one
    :class:`ft_sweeps.JobResult` per job (``run_dir``, ``overrides``, ``status``: "ok", "failed" or
    "user-error", ``error``, ``metrics``: the job's ``summary.json``), ``sweep.objective`` (``None``: none)
    and ``sweep.direction`` ("minimize"/"maximize"). Returns: nothing. Combine: collected.
    """
