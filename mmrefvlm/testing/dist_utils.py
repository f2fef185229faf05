# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""Helpers for the reliability tests: a rank-aware task sampler and two test-only hooks.

* :class:`RankSwapTaskSampler` gives each rank a *different* group of the datasets of a
  ``ConcatDataset`` (e.g. rank 0 text-only tasks, rank 1 box/mask/keypoint tasks) and swaps the
  groups every ``swap_every`` iterations, so DDP sees ranks whose computation graphs differ.
* :class:`DumpStateDictHook` saves each rank's in-memory model state at the end of training, so a
  test can compare the ranks (and the checkpoint) bitwise.
* :class:`KillAtIterHook` kills its own process with ``SIGKILL`` right after iteration ``k`` (after
  the checkpoint hook wrote ``iter_k.pth``), to test resuming after a hard crash.
"""

from __future__ import annotations

import os
import os.path as osp
import signal
from collections.abc import Iterator, Sequence

import numpy as np
import torch
from mmengine.dataset import ConcatDataset
from mmengine.dist import get_dist_info
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from torch.utils.data import Sampler

from mmrefvlm.registry import DATA_SAMPLERS, HOOKS

__all__ = ['RankSwapTaskSampler', 'DumpStateDictHook', 'KillAtIterHook']


@DATA_SAMPLERS.register_module()
class RankSwapTaskSampler(Sampler):
    """Infinite sampler: rank ``r`` draws from dataset group ``(r + phase) % len(groups)``.

    ``phase = (iteration // swap_every)``, where ``iteration`` counts the batches this sampler has
    filled (``batch_size`` indices each), so with two groups and two ranks the ranks exchange
    their task mixes every ``swap_every`` iterations. Within a group, each draw picks one of the
    group's datasets uniformly, then a uniformly random sample of it. The stream depends only on
    ``(seed, rank)``, so a resumed run that skips consumed batches replays it exactly.

    Args:
        dataset (ConcatDataset): The datasets, in config order.
        groups (Sequence[Sequence[int]]): Dataset positions (in ``dataset.datasets``) per group.
        batch_size (int): The dataloader's batch size (to count iterations).
        swap_every (int): Iterations between two group changes.
        seed (int): Base seed. Default 0.
    """

    def __init__(
        self,
        dataset: ConcatDataset,
        groups: Sequence[Sequence[int]],
        batch_size: int,
        swap_every: int,
        seed: int = 0,
    ) -> None:
        if not isinstance(dataset, ConcatDataset):
            raise TypeError(
                f'RankSwapTaskSampler needs a ConcatDataset, got {type(dataset).__name__}'
            )
        n = len(dataset.datasets)
        groups = [list(g) for g in groups]
        if not groups or any(not g or min(g) < 0 or max(g) >= n for g in groups):
            raise ValueError(
                f'groups must be non-empty lists of dataset positions in [0, {n}), got {groups}'
            )
        if batch_size <= 0 or swap_every <= 0:
            raise ValueError(
                f'batch_size and swap_every must be positive, got {batch_size}, {swap_every}'
            )
        self.groups = groups
        self.sizes = [len(d) for d in dataset.datasets]
        self.offsets = np.concatenate([[0], np.cumsum(self.sizes)[:-1]]).astype(np.int64)
        self.batch_size, self.swap_every, self.seed = batch_size, swap_every, seed
        self.rank, self.world_size = get_dist_info()

    def group_at(self, iteration: int, rank: int | None = None) -> int:
        """The group a rank (default: this one) draws from at a 0-based iteration."""
        rank = self.rank if rank is None else rank
        return (rank + iteration // self.swap_every) % len(self.groups)

    def __iter__(self) -> Iterator[int]:
        rng = np.random.default_rng([self.seed, self.rank, 7])
        count = 0
        while True:
            group = self.groups[self.group_at(count // self.batch_size)]
            d = group[int(rng.integers(len(group)))]
            yield int(self.offsets[d] + rng.integers(self.sizes[d]))
            count += 1

    def __len__(self) -> int:
        return sum(self.sizes) // self.world_size

    def set_epoch(self, epoch: int) -> None:
        """Unused: the stream is infinite (iteration-based training)."""


@HOOKS.register_module()
class DumpStateDictHook(Hook):
    """Save this rank's unwrapped model ``state_dict`` to ``<out_dir>/rank<r>.pth`` after training.

    Args:
        out_dir (str, optional): Output folder (created). Default ``<work_dir>/rank_states``.
    """

    priority = 'LOWEST'

    def __init__(self, out_dir: str | None = None) -> None:
        self.out_dir = out_dir

    def after_train(self, runner) -> None:  # noqa: D102
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        rank, _ = get_dist_info()
        out_dir = self.out_dir or osp.join(runner.work_dir, 'rank_states')
        os.makedirs(out_dir, exist_ok=True)
        state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
        torch.save(state, osp.join(out_dir, f'rank{rank}.pth'))


@HOOKS.register_module()
class KillAtIterHook(Hook):
    """Kill this process with ``SIGKILL`` right after 1-based iteration ``kill_at``.

    Lowest priority, so the ``CheckpointHook`` (``VERY_LOW``) and the logger have already written
    the checkpoint and the log lines of that iteration: the state a hard crash leaves behind.

    Args:
        kill_at (int, optional): The 1-based iteration after which to die; None: never.
    """

    priority = 'LOWEST'

    def __init__(self, kill_at: int | None = None) -> None:
        if kill_at is not None and kill_at <= 0:
            raise ValueError(f'kill_at must be positive or None, got {kill_at}')
        self.kill_at = kill_at

    def after_train_iter(
        self,
        runner,
        batch_idx: int,
        data_batch=None,  # noqa: D102
        outputs=None,
    ) -> None:
        if self.kill_at is not None and runner.iter + 1 == self.kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
