"""Run the real ``ft`` command with the benchmark's own plugins installed beside ft's.

Each bench plugin is registered the way any third-party plugin is: a distribution's metadata naming it in
the ``ft`` entry-point group, here written into a temporary folder put first on ``sys.path`` (and on
``PYTHONPATH``, so the ranks ``ft run`` launches load it too). ft then discovers, checks and activates it
exactly like an installed plugin; nothing in ft is patched.
"""

from __future__ import annotations

import atexit
import importlib
import os
import shutil
import sys
import tempfile
from pathlib import Path


def install(plugins: dict[str, str]) -> Path:
    """Register ``{entry-point name: module}`` as installed ``ft`` plugins for this process and its children."""
    site = Path(tempfile.mkdtemp(prefix="ft-bench-plugins-"))
    atexit.register(shutil.rmtree, site, ignore_errors=True)
    for name, module in plugins.items():
        info = site / f"ft_bench_{name}-0.0.0.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: ft-bench-{name}\nVersion: 0.0.0\n")
        (info / "entry_points.txt").write_text(f"[ft]\n{name} = {module}\n")
    repo = str(Path(__file__).resolve().parents[2])
    sys.path[:0] = [str(site), repo]
    os.environ["PYTHONPATH"] = os.pathsep.join([str(site), repo, *filter(None, [os.environ.get("PYTHONPATH")])])
    importlib.invalidate_caches()
    return site


def run_ft(plugins: dict[str, str], argv: list[str]) -> int:
    """``ft <argv>`` with these bench plugins installed."""
    install(plugins)
    from ft.cli import main

    return main(argv)
