"""Run the real ``ft`` command with the benchmark's step timer and trained-token counter.

    python -m bench.packing.ft_launch run +packing=multipack data.path=rows.jsonl ...

The only difference from typing ``ft ...``: two always-active plugins, the harness's step timer
(:mod:`bench._harness.ft_plugin`) and :mod:`bench.packing.ft_tokens`.
"""

from __future__ import annotations

import sys


def main() -> int:
    from bench._harness.plugins import run_ft

    return run_ft({"bench_timing": "bench._harness.ft_plugin", "bench_trained_tokens": "bench.packing.ft_tokens"}, sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
