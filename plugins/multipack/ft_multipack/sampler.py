"""The multipack batch sampler and the dataset view it reads through.

A batch is a list of packs and a pack a tuple of row indices; :class:`PackedRows` turns one pack into
the rows' columns, and :class:`ft_multipack.collator.PackedCollator` lays them out side by side.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch

from ft_multipack.packing import PackingReport, pack_rows, report, resize_packs

log = logging.getLogger("ft")

Pack = tuple[int, ...]


class MultipackBatchSampler(torch.utils.data.Sampler[list[Pack]]):
    """Batches of ``packs_per_batch`` packs, each pack at most ``capacity`` tokens.

    * Deterministic: the packs of an epoch depend only on ``(seed, epoch)``; ``set_epoch`` (called by
      the trainer) reshuffles, and resuming mid-epoch replays the same batches, so skipping the ones
      already trained lands on the right rows.
    * Same length every epoch and on every rank: the number of packs is fixed by epoch 0 and rounded up
      to a multiple of ``num_replicas``; other epochs are brought to that number without dropping a
      row (:func:`resize_packs`), and rank ``r`` takes packs ``r, r + num_replicas, ...``.
    """

    def __init__(self, lengths: Sequence[int] | np.ndarray, capacity: int, packs_per_batch: int, *,
                 seed: int = 0, shuffle: bool = True, group_size: int = 1_000, num_replicas: int = 1,
                 rank: int = 0) -> None:
        if packs_per_batch < 1:
            raise ValueError(f"packs_per_batch must be >= 1, got {packs_per_batch}")
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank {rank} is not in [0, {num_replicas})")
        self.lengths = np.asarray(lengths, dtype=np.int64)
        self.capacity = int(capacity)
        self.packs_per_batch = int(packs_per_batch)
        self.seed = int(seed)
        self.shuffle = shuffle
        self.group_size = int(group_size)
        self.num_replicas = int(num_replicas)
        self.rank = int(rank)
        self.epoch = 0
        first = self._raw_packs(0)
        self.total_packs = max(1, math.ceil(len(first) / self.num_replicas)) * self.num_replicas
        self._cached: tuple[int, list[list[int]]] = (0, self._to_total(first, 0))

    def _raw_packs(self, epoch: int) -> list[list[int]]:
        return pack_rows(self.lengths, self.capacity, seed=self.seed, epoch=epoch if self.shuffle else 0,
                         group_size=self.group_size, shuffle=self.shuffle)

    def _to_total(self, packs: list[list[int]], epoch: int) -> list[list[int]]:
        if len(packs) == self.total_packs:
            return packs
        resized = resize_packs(packs, self.lengths, self.capacity, self.total_packs)
        if len(resized) > self.total_packs:
            log.warning("multipack: epoch %d needs %d packs where the trainer counted %d; the last %d "
                        "batch(es) of this epoch may not be reached", epoch, len(resized), self.total_packs,
                        math.ceil((len(resized) - self.total_packs) / self.packs_per_batch))
        return resized

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def packs(self, epoch: int | None = None) -> list[list[int]]:
        """Every rank's packs of ``epoch`` (default: the current one), in training order."""
        epoch = self.epoch if epoch is None else int(epoch)
        if not self.shuffle:
            epoch = 0
        if self._cached[0] != epoch:
            self._cached = (epoch, self._to_total(self._raw_packs(epoch), epoch))
        return self._cached[1]

    def __iter__(self) -> Iterator[list[Pack]]:
        mine = self.packs()[self.rank::self.num_replicas]
        for start in range(0, len(mine), self.packs_per_batch):
            yield [tuple(pack) for pack in mine[start:start + self.packs_per_batch]]

    def __len__(self) -> int:
        return math.ceil(self.total_packs / self.num_replicas / self.packs_per_batch)

    def report(self, epoch: int = 0) -> PackingReport:
        return report(self.packs(epoch), self.lengths, self.capacity)


class PackedRows(torch.utils.data.Dataset):
    """A view of a tokenized dataset indexed by packs: ``view[(3, 17, 4)]`` is one pack's columns.

    The ``DataLoader`` gets one item per pack, so the collator still knows where packs begin and end.
    """

    def __init__(self, dataset: Any, columns: Sequence[str] = ("input_ids", "labels")) -> None:
        self.dataset = dataset
        self.columns = tuple(columns)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, pack: Pack | int) -> dict[str, list[Any]]:
        if isinstance(pack, int):
            pack = (pack,)
        rows = self.dataset[list(pack)]
        return {column: list(rows[column]) for column in self.columns}


def row_lengths(dataset: Any) -> np.ndarray:
    """Token counts of every row, read from Arrow's list offsets when the dataset is a ``datasets.Dataset``."""
    table = getattr(dataset, "data", None)
    if table is not None and hasattr(table, "column") and getattr(dataset, "_indices", None) is None:
        import pyarrow.compute as pc

        return pc.list_value_length(table.column("input_ids")).to_numpy(zero_copy_only=False).astype(np.int64)
    return np.fromiter((len(dataset[i]["input_ids"]) for i in range(len(dataset))), dtype=np.int64,
                       count=len(dataset))
