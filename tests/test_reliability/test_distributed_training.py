# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""Two CPU processes (gloo, DDP with find_unused_parameters=False) with disjoint task mixes must
finish without hanging and end with bitwise-identical parameters on both ranks."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from mmengine.dataset import BaseDataset, ConcatDataset

from mmrefvlm.testing.dist_utils import RankSwapTaskSampler

from .conftest import DIST_CFG, TRAIN, run_tool, scalars, tail

MAX_ITERS, SWAP_EVERY = 20, 10  # as in tests/data/configs/tiny_stage2_dist.py
UNIT_LOSSES = ('loss_box_l1', 'loss_mask_dice', 'loss_keypoint_l1')


def test_two_ranks_disjoint_task_mixes_no_hang_identical_params(demo_cwd, tmp_path):
    work = tmp_path / 'work'
    res = run_tool(
        [
            '-m',
            'torch.distributed.run',
            '--standalone',
            '--nproc_per_node',
            '2',
            TRAIN,
            DIST_CFG,
            '--launcher',
            'pytorch',
            '--work-dir',
            str(work),
        ],
        cwd=demo_cwd,
        log_file=tmp_path / 'train.log',
        timeout=300,
    )
    assert res.returncode == 0, tail(res.log)
    assert 'Distributed training: True' in res.log and 'GPU number: 2' in res.log  # 2 ranks

    ranks = [torch.load(work / 'rank_states' / f'rank{r}.pth', weights_only=True) for r in (0, 1)]
    ckpt = torch.load(work / f'iter_{MAX_ITERS}.pth', weights_only=True)
    assert ckpt['meta']['iter'] == MAX_ITERS
    saved = ckpt['state_dict']
    assert ranks[0].keys() == ranks[1].keys() == saved.keys()
    differ = [
        k
        for k in saved
        if not (torch.equal(ranks[0][k], ranks[1][k]) and torch.equal(ranks[0][k], saved[k]))
    ]
    assert not differ, f'parameters differ across ranks / checkpoint: {differ[:10]}'

    # Rank 0 (which logs) saw text-only batches first (only the LM loss), then unit batches.
    rows = scalars(work)
    assert sorted(rows) == list(range(1, MAX_ITERS + 1))
    assert all(np.isfinite(r['loss']) for r in rows.values())
    # every step logs every unit's keys; rank 0 (whose log this is) has text-only batches first,
    # so its unit losses are exactly 0 there and become non-zero after the swap
    for it in range(1, SWAP_EVERY + 1):
        assert all(rows[it][k] == 0 for k in UNIT_LOSSES), (it, rows[it])
    seen = {
        k for it in range(SWAP_EVERY + 1, MAX_ITERS + 1) for k in UNIT_LOSSES if rows[it][k] != 0
    }
    assert seen == set(UNIT_LOSSES)


class _Sized(BaseDataset):
    def __init__(self, n: int) -> None:
        self.n = n
        super().__init__(lazy_init=True, serialize_data=False)

    def load_data_list(self) -> list[dict]:
        return [dict(i=i) for i in range(self.n)]


def test_rank_swap_sampler_gives_disjoint_groups_then_swaps(monkeypatch):
    sizes = [3, 4, 5, 6]  # groups: datasets {0, 1} and {2, 3}
    concat = ConcatDataset([_Sized(n) for n in sizes])
    bounds = np.cumsum([0] + sizes)
    batch, swap = 2, 3
    streams = {}
    for rank in (0, 1):
        monkeypatch.setattr('mmrefvlm.testing.dist_utils.get_dist_info', lambda r=rank: (r, 2))
        sampler = RankSwapTaskSampler(
            concat, groups=[[0, 1], [2, 3]], batch_size=batch, swap_every=swap, seed=1
        )
        it = iter(sampler)
        streams[rank] = [next(it) for _ in range(4 * swap * batch)]
        again = iter(
            RankSwapTaskSampler(
                concat, groups=[[0, 1], [2, 3]], batch_size=batch, swap_every=swap, seed=1
            )
        )
        assert [next(again) for _ in range(len(streams[rank]))] == streams[rank]  # replayable
    for rank, stream in streams.items():
        ds = np.searchsorted(bounds, stream, side='right') - 1
        for i, d in enumerate(ds):
            phase = (i // batch) // swap
            expected = {0, 1} if (rank + phase) % 2 == 0 else {2, 3}
            assert d in expected, (rank, i, d)
        assert set(ds) == {0, 1, 2, 3}
    with pytest.raises(ValueError, match='dataset positions'):
        RankSwapTaskSampler(concat, groups=[[0, 7]], batch_size=1, swap_every=1)
