# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""Weighted sampling over several datasets with per-dataset ratios from the config."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
from mmengine.dataset import ConcatDataset
from mmengine.dist import get_dist_info, sync_random_seed
from torch.utils.data import Sampler

from mmrefvlm.registry import DATA_SAMPLERS


@DATA_SAMPLERS.register_module()
class WeightedMultiDatasetSampler(Sampler):
    """Infinite sampler over a ``ConcatDataset``: each draw picks a dataset with probability
    proportional to its ratio, then its next sample from a per-dataset shuffled permutation
    (reshuffled when exhausted), so every sample of a dataset is seen before any repeats.

    Deterministic for a seed and rank (resume replays the same stream); each rank has its own
    stream.

    Args:
        dataset (ConcatDataset): The datasets, in config order.
        ratios (Sequence[float], optional): One non-negative ratio per dataset (normalised).
            Default: proportional to dataset sizes.
        seed (int, optional): Base seed (synchronised across ranks when None).
    """

    def __init__(
        self, dataset: ConcatDataset, ratios: Sequence[float] | None = None, seed: int | None = None
    ) -> None:
        if not isinstance(dataset, ConcatDataset):
            raise TypeError(
                'WeightedMultiDatasetSampler needs a ConcatDataset, got '
                f'{type(dataset).__name__}; use dict(type="ConcatDataset", datasets=[...])'
            )
        sizes = [len(d) for d in dataset.datasets]
        ratios = list(sizes if ratios is None else ratios)
        if len(ratios) != len(sizes) or any(r < 0 for r in ratios) or sum(ratios) <= 0:
            raise ValueError(
                f'ratios must be {len(sizes)} non-negative numbers with a positive sum, '
                f'got {ratios}'
            )
        for r, s, d in zip(ratios, sizes, dataset.datasets, strict=True):
            if r > 0 and s == 0:
                raise ValueError(f'dataset {d!r} is empty but has ratio {r}')
        self.sizes = sizes
        self.probs = np.asarray(ratios, dtype=np.float64) / float(sum(ratios))
        self.offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
        self.rank, self.world_size = get_dist_info()
        self.seed = sync_random_seed() if seed is None else seed
        self._skip = 0

    def skip(self, num: int) -> None:
        """Make the next ``__iter__`` start ``num`` indices into the stream (exact resume without
        loading the consumed samples; see ``FastResumeIterBasedTrainLoop``)."""
        if num < 0:
            raise ValueError(f'cannot skip a negative number of samples ({num})')
        self._skip = int(num)

    def __iter__(self) -> Iterator[int]:
        rng = np.random.default_rng([self.seed, self.rank])
        perms = [rng.permutation(s) for s in self.sizes]
        cursor = [0] * len(self.sizes)
        to_skip, self._skip = self._skip, 0
        while True:
            for d in rng.choice(len(self.sizes), size=1024, p=self.probs):
                if cursor[d] == self.sizes[d]:
                    perms[d], cursor[d] = rng.permutation(self.sizes[d]), 0
                index = int(self.offsets[d] + perms[d][cursor[d]])
                cursor[d] += 1
                if to_skip:
                    to_skip -= 1
                    continue
                yield index

    def __len__(self) -> int:
        return sum(self.sizes) // self.world_size

    def set_epoch(self, epoch: int) -> None:
        """Unused: the stream is infinite (iteration-based training)."""
