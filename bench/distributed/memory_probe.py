"""Measure what each rank holds after an optimizer step; run by ``bench/distributed/run.py`` under torchrun.

    python -m torch.distributed.run --standalone --nproc_per_node 2 -m bench.distributed.memory_probe run ...

It is the real ``ft`` command with one extra always-active plugin whose callback, at the end of step
``FT_BENCH_PROBE_STEP``, just before its optimizer step (the gradients are complete, Adam's state exists
from the previous step, the activations are freed), writes this rank's figures to
``$FT_BENCH_MEMORY_DIR/rank<N>.json``:

* ``tensor_mb``: bytes of every live CPU tensor storage in the process, each storage counted once: the
  parameters this rank holds (its shard, under FSDP2 and ZeRO-3), their gradients, the optimizer state,
  and any flat buffers the engine keeps. This is the "parameters + gradients + optimizer" figure.
* ``peak_rss_mb``: the process's peak resident memory (libraries, the data, the loading copy included).
"""

from __future__ import annotations

import gc
import json
import os
import resource
import sys
from pathlib import Path
from typing import Any

from ft import hookimpl
from ft.plugins import PluginInfo

FT_PLUGIN = PluginInfo(name="bench_memory", description="Per-rank memory probe (bench/distributed)", always_active=True)


def live_tensor_bytes() -> int:
    """Bytes of the distinct CPU storages behind every tensor the garbage collector can see."""
    import torch

    seen: dict[int, int] = {}
    for obj in gc.get_objects():
        try:
            if not isinstance(obj, torch.Tensor) or obj.device.type != "cpu":
                continue
            storage = obj.untyped_storage()
            pointer, size = storage.data_ptr(), storage.nbytes()
        except Exception:  # noqa: BLE001 - wrapper tensors (DTensor) have no storage of their own; their local shard does
            continue
        if pointer:
            seen[pointer] = max(seen.get(pointer, 0), size)
    return sum(seen.values())


@hookimpl
def callbacks(ctx: Any) -> list[Any]:
    from transformers import TrainerCallback

    step = int(os.environ.get("FT_BENCH_PROBE_STEP", "2"))
    out = Path(os.environ["FT_BENCH_MEMORY_DIR"])

    class Probe(TrainerCallback):
        def on_pre_optimizer_step(self, args, state, control, **kwargs):  # noqa: ANN001
            if state.global_step != step - 1:  # counts finished steps: step N is running
                return
            gc.collect()
            figures = {"rank": ctx.rank, "world_size": ctx.world_size, "step": step,
                       "tensor_mb": live_tensor_bytes() / 2**20,
                       "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
            (out / f"rank{ctx.rank}.json").write_text(json.dumps(figures))

    return [Probe()]


def main() -> int:
    from bench._harness.plugins import run_ft

    return run_ft({"bench_memory": "bench.distributed.memory_probe"}, sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
