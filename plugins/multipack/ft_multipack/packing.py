"""Bin-packing of rows by length: which rows share a sequence of ``capacity`` tokens.

Pure Python and numpy (no torch), so that benchmarks and ``ft validate`` can use it cheaply.

The algorithm fills one pack at a time and closes the gaps:

* a pack is opened by the next unpacked row in shuffled order (so which rows share a pack is random),
  then takes the longest remaining row that fits, as first-fit decreasing would; once the room left
  could be covered by two or three rows, it takes the combination of one, two or three rows that
  fills the room best (usually exactly). Plain first-fit decreasing stops when the room is smaller
  than the shortest row left, which on real data leaves about 1% of every sequence empty; closing
  gaps with combinations brings packing close to the lower bound ``ceil(tokens / capacity)``;
* each epoch shuffles the rows with a generator seeded by ``(seed, epoch)``, so packs differ between
  epochs (rows meet different neighbours) and the same seed always gives the same packs;
* the shuffled rows are cut into groups of ``group_size`` rows and packed group by group; the rows of a
  group's least-full packs are carried into the next group instead of being closed half-empty, so
  only the very last packs of an epoch can be far from full.

Rows are kept in buckets by length with a sorted list of the lengths present, so "the longest row of
at most N tokens" is one ``bisect``; ten thousand rows pack in tens of milliseconds.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right, insort
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

#: A pack whose fill is below this fraction is carried into the next group rather than closed.
CARRY_BELOW_FILL = 0.98
#: How many candidate lengths a gap-closing search tries before settling for the best it found.
SEARCH_BUDGET = 64


class _LengthPool:
    """Rows not packed yet, bucketed by length; answers "longest row of at most N tokens"."""

    def __init__(self, lengths: np.ndarray, rows: Sequence[int]) -> None:
        self.by_length: dict[int, list[int]] = {}
        for row in rows:
            self.by_length.setdefault(int(lengths[row]), []).append(row)
        for bucket in self.by_length.values():
            bucket.reverse()  # pop() then hands rows out in the (shuffled) order they came in
        self.present = sorted(self.by_length)

    def __bool__(self) -> bool:
        return bool(self.present)

    def take(self, length: int) -> int:
        bucket = self.by_length[length]
        row = bucket.pop()
        if not bucket:
            del self.by_length[length]
            self.present.pop(bisect_left(self.present, length))
        return row

    def remove(self, row: int, length: int) -> bool:
        """Take ``row`` out of the pool; False if it was packed already."""
        bucket = self.by_length.get(length)
        if bucket is None or row not in bucket:
            return False
        bucket.remove(row)
        if not bucket:
            del self.by_length[length]
            self.present.pop(bisect_left(self.present, length))
        return True

    def longest_at_most(self, limit: int, held: tuple[int, ...] = ()) -> int | None:
        """The longest length <= ``limit`` with a row left once ``held`` lengths are set aside."""
        index = bisect_right(self.present, limit) - 1
        while index >= 0:
            length = self.present[index]
            if len(self.by_length[length]) > held.count(length):
                return length
            index -= 1
        return None

    def best_pair(self, room: int, held: tuple[int, ...] = (), largest: int | None = None) -> tuple[tuple[int, ...], int]:
        """Two lengths ``x >= y`` (``x <= largest``) with the largest sum <= ``room``."""
        best: tuple[int, ...] = ()
        best_sum = 0
        index = bisect_right(self.present, room if largest is None else min(room, largest)) - 1
        for _ in range(SEARCH_BUDGET):
            if index < 0:
                break
            first = self.present[index]
            index -= 1
            if 2 * first <= best_sum:
                break
            if len(self.by_length[first]) <= held.count(first):
                continue
            second = self.longest_at_most(min(first, room - first), held + (first,))
            if second is not None and first + second > best_sum:
                best, best_sum = (first, second), first + second
                if best_sum == room:
                    break
        return best, best_sum

    def best_fill(self, room: int) -> tuple[int, ...]:
        """One, two or three lengths whose sum fills ``room`` best (greedy single row otherwise)."""
        single = self.longest_at_most(room)
        if single is None:
            return ()
        choice: tuple[int, ...] = (single,)
        total = single
        longest = self.present[-1]
        if total < room and room <= 2 * longest:
            pair, pair_sum = self.best_pair(room)
            if pair_sum > total:
                choice, total = pair, pair_sum
        if total < room and room <= 3 * longest:
            index = bisect_right(self.present, room) - 1
            for _ in range(SEARCH_BUDGET):
                if index < 0 or total == room:
                    break
                first = self.present[index]
                index -= 1
                pair, pair_sum = self.best_pair(room - first, (first,), largest=first)
                if pair and first + pair_sum > total:
                    choice, total = (first,) + pair, first + pair_sum
        return choice


def fill_packs(lengths: np.ndarray, rows: Sequence[int], capacity: int) -> list[list[int]]:
    """Pack ``rows`` (indices into ``lengths``) into packs of at most ``capacity`` tokens.

    Among rows of equal length the order of ``rows`` decides who goes first, so shuffling ``rows``
    shuffles which rows end up together.
    """
    lengths = np.asarray(lengths, dtype=np.int64)
    too_long = [row for row in rows if int(lengths[row]) > capacity]
    if too_long:
        raise ValueError(f"row {too_long[0]} has {int(lengths[too_long[0]])} tokens, more than the pack "
                         f"capacity {capacity} ({len(too_long)} such rows)")
    pool = _LengthPool(lengths, rows)
    packs: list[list[int]] = []
    openers = iter(rows)
    while pool:
        room, pack = capacity, []
        for row in openers:  # the next row in shuffled order that is still unpacked opens the pack
            if pool.remove(row, int(lengths[row])):
                pack.append(row)
                room -= int(lengths[row])
                break
        while pool and room >= pool.present[0]:
            for length in pool.best_fill(room):
                pack.append(pool.take(length))
                room -= length
        packs.append(pack)
    return packs


def pack_rows(lengths: Sequence[int] | np.ndarray, capacity: int, *, seed: int, epoch: int = 0,
              group_size: int = 1_000, shuffle: bool = True) -> list[list[int]]:
    """Packs for one epoch: row indices per pack, in a (seeded) random pack order.

    ``shuffle=False`` keeps the rows in order, packs one group at a time and keeps the packs in the
    order they were made (evaluation: deterministic and independent of ``seed``).
    """
    lengths = np.asarray(lengths, dtype=np.int64)
    if capacity <= 0:
        raise ValueError(f"pack capacity must be positive, got {capacity}")
    if group_size <= 0:
        raise ValueError(f"group_size must be positive, got {group_size}")
    count = len(lengths)
    rng = np.random.default_rng([int(seed), int(epoch)]) if shuffle else None
    order = rng.permutation(count) if rng is not None else np.arange(count)
    packs: list[list[int]] = []
    carry: list[int] = []
    for start in range(0, count, group_size):
        group = carry + order[start:start + group_size].tolist()
        group_packs = fill_packs(lengths, group, capacity)
        last_group = start + group_size >= count
        if last_group:
            packs += group_packs
            break
        fills = [sum(int(lengths[row]) for row in pack) / capacity for pack in group_packs]
        emptiest = min(range(len(group_packs)), key=fills.__getitem__)
        carry = []
        for index, pack in enumerate(group_packs):
            if index == emptiest or fills[index] < CARRY_BELOW_FILL:
                carry += pack
            else:
                packs.append(pack)
    if rng is not None:
        rng.shuffle(packs)
    return packs


def resize_packs(packs: list[list[int]], lengths: Sequence[int] | np.ndarray, capacity: int,
                 target: int) -> list[list[int]]:
    """Make exactly ``target`` packs (when possible) without dropping a row.

    Used so that every epoch has the same number of batches (the trainer counts steps once) and every
    rank gets the same number: fewer packs than ``target`` splits the packs holding the most rows;
    more moves the rows of the emptiest packs into the free room of the others (best fit). Returns the
    new list; if the rows cannot fit into ``target`` packs it returns as few as it managed.
    """
    lengths = np.asarray(lengths, dtype=np.int64)
    packs = [list(pack) for pack in packs]
    while len(packs) < target:
        index = max(range(len(packs)), key=lambda i: len(packs[i]))
        pack = packs[index]
        if len(pack) < 2:
            break
        packs[index:index + 1] = [pack[: len(pack) // 2], pack[len(pack) // 2:]]
    while len(packs) > target:
        used = [int(lengths[pack].sum()) for pack in packs]
        emptiest = min(range(len(packs)), key=used.__getitem__)
        moving = sorted(packs[emptiest], key=lambda row: -int(lengths[row]))
        rest = [pack for index, pack in enumerate(packs) if index != emptiest]
        free = sorted((capacity - used[index], position)
                      for position, index in enumerate(i for i in range(len(packs)) if i != emptiest))
        placed: list[tuple[int, int]] = []
        for row in moving:
            slot = bisect_left(free, (int(lengths[row]), -1))
            if slot == len(free):
                break
            room, position = free.pop(slot)
            placed.append((row, position))
            insort(free, (room - int(lengths[row]), position))
        if len(placed) < len(moving):
            break  # the emptiest pack's rows do not fit elsewhere: keep the extra pack
        for row, position in placed:
            rest[position].append(row)
        packs = rest
    return packs


@dataclass(frozen=True)
class PackingReport:
    """What packing does to a data set: printed at the start of a run and by ``bench/packing``."""

    rows: int
    packs: int
    capacity: int
    tokens: int
    min_rows_per_pack: int
    max_rows_per_pack: int

    @property
    def efficiency(self) -> float:
        """Real tokens over the token slots of all packs (``packs x capacity``): 1.0 means no padding."""
        return self.tokens / max(1, self.packs * self.capacity)

    @property
    def rows_per_pack(self) -> float:
        return self.rows / max(1, self.packs)

    def describe(self) -> str:
        return (f"{self.rows:,} rows -> {self.packs:,} packs of <= {self.capacity} tokens, "
                f"efficiency {self.efficiency:.4f}, {self.rows_per_pack:.1f} rows per pack "
                f"(min {self.min_rows_per_pack}, max {self.max_rows_per_pack})")


def report(packs: list[list[int]], lengths: Sequence[int] | np.ndarray, capacity: int) -> PackingReport:
    lengths = np.asarray(lengths, dtype=np.int64)
    sizes = [len(pack) for pack in packs] or [0]
    return PackingReport(rows=sum(sizes), packs=len(packs), capacity=capacity,
                         tokens=int(sum(int(lengths[pack].sum()) for pack in packs)),
                         min_rows_per_pack=min(sizes), max_rows_per_pack=max(sizes))


def padded_efficiency(lengths: Sequence[int] | np.ndarray, batch_size: int, *, seed: int = 0) -> float:
    """Efficiency of plain padded batches (shuffled rows, each batch padded to its longest row)."""
    lengths = np.asarray(lengths, dtype=np.int64)
    order = np.random.default_rng(seed).permutation(len(lengths))
    slots = 0
    for start in range(0, len(order), batch_size):
        batch = lengths[order[start:start + batch_size]]
        slots += int(batch.max()) * len(batch)
    return float(lengths.sum()) / max(1, slots)
