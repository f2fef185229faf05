# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""Two CPU processes (gloo, DDP with find_unused_parameters=False) with disjoint task mixes must
finish without hanging and end with bitwise-identical parameters on both ranks. The same run under
FSDP (FlexibleRunner + the strategy of configs/_base_/strategies/fsdp.py) gives the DDP losses,
checkpoints and resumes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from mmengine.dataset import BaseDataset, ConcatDataset

from mmrefvlm.testing.dist_utils import RankSwapTaskSampler

from .conftest import CONFIGS, DIST_CFG, TRAIN, run_tool, scalars, tail

MAX_ITERS, SWAP_EVERY = 20, 10  # as in tests/data/configs/tiny_stage2_dist.py
UNIT_LOSSES = ('loss_box_l1', 'loss_mask_dice', 'loss_keypoint_l1')
FSDP_CFG = str(CONFIGS / 'tiny_stage2_fsdp.py')
DEEPSPEED_CFG = str(CONFIGS / 'tiny_stage2_deepspeed.py')
FSDP_ITERS = 4  # 2, then 2 more after resuming
#: FSDP vs DDP, float32 on CPU: the same gradients reduced in another order (reduce-scatter vs
#: all-reduce); measured differences are ~1e-7 relative.
RTOL, ATOL = 1e-4, 1e-6


def torchrun(config: str, work, *args: str) -> list[str]:
    """``python -m torch.distributed.run`` arguments for 2 CPU ranks of tools/train.py."""
    return [
        *('-m', 'torch.distributed.run', '--standalone', '--nproc_per_node', '2'),
        *(TRAIN, config, '--launcher', 'pytorch', '--work-dir', str(work), *args),
    ]


@pytest.fixture(scope='module')
def init_ckpt(tmp_path_factory):
    """The tiny model's initial weights: DDP and FSDP runs both start from them (``load_from``).

    FlexibleRunner initialises the model at another point of the RNG stream than Runner, so the
    same seed alone does not give the same starting weights."""
    from mmengine.config import Config
    from mmengine.registry import DefaultScope

    from mmrefvlm.registry import MODELS

    torch.manual_seed(0)
    with DefaultScope.overwrite_default_scope('mmrefvlm'):
        model = MODELS.build(Config.fromfile(DIST_CFG).model)
    model.init_weights()
    path = tmp_path_factory.mktemp('init') / 'init.pth'
    torch.save({'state_dict': model.state_dict(), 'meta': {}}, path)
    return path


@pytest.fixture(scope='module')
def ddp_run(demo_cwd, init_ckpt, tmp_path_factory):
    """The 20-iteration 2-rank DDP run (its work dir); shared by the DDP and FSDP tests."""
    work = tmp_path_factory.mktemp('ddp') / 'work'
    res = run_tool(
        torchrun(DIST_CFG, work, '--cfg-options', f'load_from={init_ckpt}'),
        cwd=demo_cwd,
        log_file=work.parent / 'train.log',
        timeout=300,
    )
    assert res.returncode == 0, tail(res.log)
    assert 'Distributed training: True' in res.log and 'GPU number: 2' in res.log  # 2 ranks
    return work


def test_two_ranks_disjoint_task_mixes_no_hang_identical_params(ddp_run):
    work = ddp_run

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


def test_fsdp_two_ranks_match_ddp_checkpoint_and_resume(ddp_run, init_ckpt, demo_cwd, tmp_path):
    work = tmp_path / 'fsdp'
    first = run_tool(
        torchrun(FSDP_CFG, work, '--cfg-options', f'load_from={init_ckpt}')
        + ['train_cfg.max_iters=2', 'default_hooks.checkpoint.interval=2'],
        cwd=demo_cwd,
        log_file=tmp_path / 'fsdp1.log',
        timeout=300,
    )
    assert first.returncode == 0, tail(first.log)
    assert 'MMFullyShardedDataParallel' in first.log or 'FlexibleRunner' in first.log
    resumed = run_tool(
        torchrun(FSDP_CFG, work, '--resume', '--cfg-options')
        + [f'train_cfg.max_iters={FSDP_ITERS}', 'default_hooks.checkpoint.interval=2'],
        cwd=demo_cwd,
        log_file=tmp_path / 'fsdp2.log',
        timeout=300,
    )
    assert resumed.returncode == 0, tail(resumed.log)
    assert 'resumed epoch: 0, iter: 2' in resumed.log

    # the losses (rank 0's) and the global gradient norm (both ranks') of iterations 1-4
    fsdp, ddp = scalars(work), scalars(ddp_run)
    assert sorted(fsdp) == list(range(1, FSDP_ITERS + 1))
    for key in ('loss', 'loss_llm', 'grad_norm'):
        got = [fsdp[i][key] for i in sorted(fsdp)]
        want = [ddp[i][key] for i in sorted(fsdp)]
        np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL, err_msg=key)

    # a full (unsharded) weights-only checkpoint, keyed like DDP's: tools/test.py reads it
    ckpt = torch.load(work / f'iter_{FSDP_ITERS}.pth', weights_only=True)
    reference = torch.load(ddp_run / f'iter_{MAX_ITERS}.pth', weights_only=True)
    assert ckpt['meta']['iter'] == FSDP_ITERS
    assert ckpt['state_dict'].keys() == reference['state_dict'].keys()
    assert all(v.shape == reference['state_dict'][k].shape for k, v in ckpt['state_dict'].items())
    assert ckpt['optimizer']['nan_guard'] == {'num_skipped': 0, 'num_consecutive': 0}


@pytest.mark.slow  # deepspeed is not installed in CI; on CPU its first run compiles an op (minutes)
def test_deepspeed_zero2_two_ranks_checkpoint_and_resume(demo_cwd, tmp_path):
    pytest.importorskip('deepspeed')
    work = tmp_path / 'deepspeed'
    for args, its in ((['--cfg-options'], 2), (['--resume', '--cfg-options'], FSDP_ITERS)):
        res = run_tool(
            torchrun(DEEPSPEED_CFG, work, *args)
            + [f'train_cfg.max_iters={its}', 'default_hooks.checkpoint.interval=2'],
            cwd=demo_cwd,
            log_file=tmp_path / f'deepspeed{its}.log',
            timeout=900,
        )
        assert res.returncode == 0, tail(res.log)
    assert 'resumed epoch: 0, iter: 2' in res.log
    rows = scalars(work)
    assert sorted(rows) == list(range(1, FSDP_ITERS + 1))
    assert all(np.isfinite(r['loss']) for r in rows.values())
    assert (work / f'iter_{FSDP_ITERS}.pth').is_dir()  # a DeepSpeed checkpoint folder
