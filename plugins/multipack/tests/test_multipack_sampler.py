"""Packing and the batch sampler: every row once, full packs, deterministic, resumable, rank-even."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from accelerate import skip_first_batches

from ft_multipack.packing import fill_packs, pack_rows, padded_efficiency, report, resize_packs
from ft_multipack.sampler import MultipackBatchSampler, PackedRows, row_lengths


def realistic_lengths(count: int = 3000, seed: int = 0) -> np.ndarray:
    """A long-tailed mix like instruction data: most rows 60-300 tokens, a few up to 1,500."""
    rng = np.random.default_rng(seed)
    return np.clip(rng.lognormal(mean=5.0, sigma=0.55, size=count), 20, 1500).astype(np.int64)


def flat(packs) -> list[int]:
    return sorted(row for pack in packs for row in pack)


@pytest.mark.parametrize("capacity", [2048, 4096])
def test_every_row_is_packed_once_and_packs_are_almost_full(capacity):
    lengths = realistic_lengths()
    packs = pack_rows(lengths, capacity, seed=3, group_size=1000)
    assert flat(packs) == list(range(len(lengths)))
    assert max(int(lengths[pack].sum()) for pack in packs) <= capacity
    lower_bound = -(-int(lengths.sum()) // capacity)
    assert len(packs) <= lower_bound + 2  # groups of 1,000 rows, yet at most 2 packs over the bound
    assert report(packs, lengths, capacity).efficiency > 0.99
    assert padded_efficiency(lengths, 8) < 0.8  # what packing is for


def test_gap_closing_beats_plain_first_fit_decreasing():
    lengths = realistic_lengths(seed=5)
    capacity = 2048
    first_fit: list[list[int]] = []
    room: list[int] = []
    for row in sorted(range(len(lengths)), key=lambda r: -lengths[r]):
        slot = next((i for i, free in enumerate(room) if free >= lengths[row]), None)
        if slot is None:
            first_fit.append([row])
            room.append(capacity - int(lengths[row]))
        else:
            first_fit[slot].append(row)
            room[slot] -= int(lengths[row])
    ours = fill_packs(lengths, list(range(len(lengths))), capacity)
    assert len(ours) < len(first_fit)


def test_a_row_longer_than_a_pack_is_an_error():
    with pytest.raises(ValueError, match="more than the pack capacity 100"):
        pack_rows([50, 101], 100, seed=0)


def test_packs_are_deterministic_for_a_seed_and_change_between_epochs():
    lengths = realistic_lengths(800)
    first = pack_rows(lengths, 1024, seed=7, epoch=0)
    assert first == pack_rows(lengths, 1024, seed=7, epoch=0)
    assert first != pack_rows(lengths, 1024, seed=7, epoch=1)
    assert first != pack_rows(lengths, 1024, seed=8, epoch=0)


def test_epochs_mix_rows_with_new_neighbours():
    """Packing sorts by length, so without shuffled groups the same rows would meet every epoch."""
    lengths = realistic_lengths(3000)

    def neighbours(epoch: int, group_size: int) -> set[frozenset[int]]:
        packs = pack_rows(lengths, 1024, seed=7, epoch=epoch, group_size=group_size)
        return {frozenset(pair) for pack in packs for pair in itertools.combinations(pack, 2)}

    grouped = neighbours(0, 1000)
    assert len(grouped & neighbours(1, 1000)) < 0.05 * len(grouped)
    whole = neighbours(0, 3000)
    assert len(whole & neighbours(1, 3000)) > len(grouped & neighbours(1, 1000))


def test_resizing_keeps_every_row():
    lengths = realistic_lengths(500)
    packs = pack_rows(lengths, 2048, seed=1)
    more = resize_packs(packs, lengths, 2048, len(packs) + 5)
    assert len(more) == len(packs) + 5 and flat(more) == flat(packs)
    assert max(int(lengths[pack].sum()) for pack in more) <= 2048
    loose = [pack[: len(pack) // 2] for pack in packs] + [pack[len(pack) // 2:] for pack in packs]
    fewer = resize_packs(loose, lengths, 2048, len(loose) - 10)
    assert len(fewer) == len(loose) - 10 and flat(fewer) == flat(packs)
    assert max(int(lengths[pack].sum()) for pack in fewer) <= 2048


def test_every_epoch_has_the_length_the_trainer_counted():
    lengths = realistic_lengths(1200)
    sampler = MultipackBatchSampler(lengths, 1024, packs_per_batch=3, seed=0, group_size=300)
    for epoch in range(6):
        sampler.set_epoch(epoch)
        batches = list(sampler)
        assert len(batches) == len(sampler)
        assert flat([pack for batch in batches for pack in batch]) == list(range(len(lengths)))


@pytest.mark.parametrize("world", [2, 3, 4])
def test_ranks_get_the_same_number_of_batches_and_all_rows_between_them(world):
    lengths = realistic_lengths(1000)
    samplers = [MultipackBatchSampler(lengths, 2048, packs_per_batch=2, seed=4, num_replicas=world, rank=rank)
                for rank in range(world)]
    for epoch in (0, 1):
        seen: list[int] = []
        counts = set()
        for sampler in samplers:
            sampler.set_epoch(epoch)
            batches = list(sampler)
            counts.add(len(batches))
            assert len(batches) == len(sampler)
            assert all(len(batch) == 2 for batch in batches[:-1])
            seen += [row for batch in batches for pack in batch for row in pack]
        assert len(counts) == 1
        assert sorted(seen) == list(range(len(lengths)))  # no row dropped, none twice


def test_resuming_mid_epoch_replays_the_remaining_batches():
    """The trainer resumes with accelerate's skip_first_batches over a fresh sampler."""
    from datasets import Dataset

    lengths = realistic_lengths(400)
    dataset = Dataset.from_dict({"input_ids": [[1] * int(n) for n in lengths], "labels": [[1] * int(n) for n in lengths]})
    assert row_lengths(dataset).tolist() == lengths.tolist()

    def loader(sampler):
        return torch.utils.data.DataLoader(PackedRows(dataset), batch_sampler=sampler,
                                           collate_fn=lambda packs: [len(p["input_ids"]) for p in packs])

    def order(sampler):
        return [tuple(pack) for batch in sampler for pack in batch]

    full = MultipackBatchSampler(lengths, 1024, packs_per_batch=2, seed=9)
    full.set_epoch(2)
    uninterrupted = order(full)
    resumed = MultipackBatchSampler(lengths, 1024, packs_per_batch=2, seed=9)
    resumed.set_epoch(2)
    skipped = skip_first_batches(loader(resumed), 5)
    rows_per_pack_after = [count for batch in skipped for count in batch]
    assert rows_per_pack_after == [len(pack) for pack in uninterrupted[10:]]
    assert order(resumed)[10:] == uninterrupted[10:]


def test_eval_packs_keep_the_row_order_and_ignore_the_seed():
    lengths = realistic_lengths(300)
    one = MultipackBatchSampler(lengths, 2048, 4, seed=1, shuffle=False)
    two = MultipackBatchSampler(lengths, 2048, 4, seed=2, shuffle=False)
    two.set_epoch(3)
    assert list(one) == list(two)
