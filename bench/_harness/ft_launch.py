"""Run the real ``ft`` command with the benchmark's timing plugin registered.

    python -m bench._harness.ft_launch run data=alpaca data.path=rows.jsonl ...

The only difference from typing ``ft ...`` is one extra always-active plugin
(:mod:`bench._harness.ft_plugin`) that contributes a step-timing ``TrainerCallback``.
"""

from __future__ import annotations

import sys


def main() -> int:
    from bench._harness.plugins import run_ft

    return run_ft({"bench_timing": "bench._harness.ft_plugin"}, sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
