"""Run the real ``ft`` command with the benchmark's step timer and trained-token counter.

    python -m bench.packing.ft_launch run +packing=multipack data.path=rows.jsonl ...

The only difference from typing ``ft ...``: two always-active plugins, the harness's step timer
(:mod:`bench._harness.ft_plugin`) and :mod:`bench.packing.ft_tokens`.
"""

from __future__ import annotations

import sys


def main() -> int:
    import ft.plugins
    from ft.cli import main as ft_main

    ft.plugins.BUILTIN_PLUGINS = (*ft.plugins.BUILTIN_PLUGINS, "bench._harness.ft_plugin", "bench.packing.ft_tokens")
    return ft_main(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
