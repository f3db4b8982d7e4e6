"""A seeded epoch sampler that can start mid-epoch, so a resumed run sees the same batches."""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import Sampler


class EpochSampler(Sampler[int]):
    """Shuffles ``num_samples`` indices with a generator seeded by ``(seed, epoch)``.

    ``set_epoch(epoch, start_index)`` picks the permutation and skips the samples already
    consumed, without decoding them. With ``world_size > 1`` each rank takes every
    ``world_size``-th index of the same permutation (the DistributedSampler scheme).
    """

    def __init__(
        self, num_samples: int, seed: int = 0, shuffle: bool = True, rank: int = 0, world_size: int = 1
    ):
        self.num_samples = num_samples
        self.seed = seed
        self.shuffle = shuffle
        self.rank = rank
        self.world_size = world_size
        self.epoch = 0
        self.start_index = 0

    def set_epoch(self, epoch: int, start_index: int = 0) -> None:
        self.epoch = epoch
        self.start_index = start_index

    def _indices(self) -> list[int]:
        if self.shuffle:
            generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
            order = torch.randperm(self.num_samples, generator=generator).tolist()
        else:
            order = list(range(self.num_samples))
        per_rank = self.num_samples // self.world_size
        return order[self.rank : per_rank * self.world_size : self.world_size]

    def __iter__(self) -> Iterator[int]:
        return iter(self._indices()[self.start_index :])

    def __len__(self) -> int:
        return self.num_samples // self.world_size - self.start_index
