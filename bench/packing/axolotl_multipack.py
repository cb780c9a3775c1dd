"""Axolotl 0.19's multipack sampler on a given length array; runs in Axolotl's own virtual environment.

    /tmp/axolotl-venv/bin/python bench/packing/axolotl_multipack.py lengths.npy 2048,4096 0,1,2

Calls ``axolotl.utils.samplers.multipack.MultipackBatchSampler`` the way Axolotl's trainer does for
one process with ``micro_batch_size: 1`` (``AxolotlTrainer._create_multipack_sampler``): a
``RandomSampler`` over the rows, ``batch_size=1`` pack per batch, ``batch_max_len=sequence_len``, and
Axolotl's config defaults ``sample_packing_group_size: 100000``, ``sample_packing_bin_size: 200``,
``sample_packing_sequentially: false``, ``drop_last=True``. ``num_processes=1``: the whole mix is one
group of rows, so a process pool would only add start-up time. Prints one JSON line per
(capacity, seed): packs, the efficiency computed as ``bench/packing/run.py`` computes ft's (sum of
lengths / (packs x capacity)), Axolotl's own ``efficiency()``, and the seconds one
``generate_batches`` took (the first call of the process also compiles numba's kernels and is
reported separately). Imports Axolotl; copies none of it.
"""

from __future__ import annotations

import json
import sys
import time

import numpy as np
import torch
from torch.utils.data import RandomSampler

from axolotl.utils.samplers.multipack import MultipackBatchSampler


def build(lengths: np.ndarray, capacity: int, seed: int) -> MultipackBatchSampler:
    generator = torch.Generator().manual_seed(seed)
    return MultipackBatchSampler(RandomSampler(range(len(lengths)), generator=generator), batch_size=1,
                                 batch_max_len=capacity, lengths=lengths, bin_size=200, group_size=100_000,
                                 sequential=False, drop_last=True, num_processes=1)


def main() -> int:
    lengths = np.load(sys.argv[1]).astype(np.int64)
    capacities = [int(c) for c in sys.argv[2].split(",")]
    seeds = [int(s) for s in sys.argv[3].split(",")]
    started = time.perf_counter()
    build(lengths[:64], capacities[0], 0).generate_batches()  # numba compiles pack_group here
    compile_s = time.perf_counter() - started
    for capacity in capacities:
        for seed in seeds:
            sampler = build(lengths, capacity, seed)
            started = time.perf_counter()
            batches = sampler.generate_batches(set_stats=True)
            seconds = time.perf_counter() - started
            packs = [list(map(int, pack)) for batch in batches for pack in batch]
            rows = sorted(row for pack in packs for row in pack)
            used = int(sum(int(lengths[pack].sum()) for pack in packs))
            print(json.dumps({"capacity": capacity, "seed": seed, "packs": len(packs), "rows": len(rows),
                              "rows_once": rows == list(range(len(lengths))),
                              "efficiency": used / (len(packs) * capacity),
                              "axolotl_efficiency": float(sampler.efficiency()),
                              "max_pack": int(max(int(lengths[pack].sum()) for pack in packs)),
                              "seconds": seconds, "compile_s": compile_s}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
