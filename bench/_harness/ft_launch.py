"""Run the real ``ft`` command with the benchmark's timing plugin registered.

    python -m bench._harness.ft_launch run data=alpaca data.path=rows.jsonl ...

The only difference from typing ``ft ...`` is one extra always-active plugin
(:mod:`bench._harness.ft_plugin`) that contributes a step-timing ``TrainerCallback``.
"""

from __future__ import annotations

import sys


def main() -> int:
    import ft.plugins
    from ft.cli import main as ft_main

    ft.plugins.BUILTIN_PLUGINS = (*ft.plugins.BUILTIN_PLUGINS, "bench._harness.ft_plugin")
    return ft_main(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
