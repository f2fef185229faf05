# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""Sharded training through MMEngine's FlexibleRunner on one GPU (world size 1, ``torchrun``):
PyTorch FSDP and DeepSpeed ZeRO-2 train the tiny config, checkpoint, and ``--resume`` from the
checkpoint of a killed run."""

from __future__ import annotations

import math
import signal

import pytest
from mmengine.config import Config

from tests.test_reliability.conftest import CONFIGS, TRAIN, run_tool, scalars, tail

pytestmark = pytest.mark.gpu

N, K = 12, 6  # max_iters and ckpt_interval of the two configs


def _torchrun(cfg: str, work, *extra: str) -> list[str]:
    return ['-m', 'torch.distributed.run', '--standalone', '--nproc_per_node', '1', TRAIN, cfg,
            '--launcher', 'pytorch', '--work-dir', str(work), *extra]  # fmt: skip


def _kill_hook_index(cfg: str) -> int:
    hooks = Config.fromfile(cfg).custom_hooks
    return next(i for i, h in enumerate(hooks) if 'KillAtIterHook' in str(h['type']))


def _train_kill_resume(demo_cwd, tmp_path, cfg: str) -> tuple[dict, dict, str]:
    full, part = tmp_path / 'full', tmp_path / 'part'
    run = lambda args, log: run_tool(  # noqa: E731
        args, cwd=demo_cwd, log_file=tmp_path / log, timeout=300, cuda=True
    )
    res = run(_torchrun(cfg, full), 'full.log')
    assert res.returncode == 0, tail(res.log)
    kill = f'custom_hooks.{_kill_hook_index(cfg)}.kill_at={K}'
    res = run(_torchrun(cfg, part, '--cfg-options', kill), 'killed.log')
    assert res.returncode != 0, tail(res.log)  # torchrun reports the SIGKILLed worker
    assert str(-signal.SIGKILL) in res.log or 'SIGKILL' in res.log, tail(res.log)
    res = run(_torchrun(cfg, part, '--resume'), 'resumed.log')
    assert res.returncode == 0, tail(res.log)
    assert f'resumed epoch: 0, iter: {K}' in res.log, tail(res.log)
    return scalars(full), scalars(part), res.log


def _check_losses(rows_full: dict, rows_part: dict) -> None:
    assert sorted(rows_full) == sorted(rows_part) == list(range(1, N + 1))
    assert all(math.isfinite(r['loss']) for r in rows_full.values())
    # iteration K+1 starts from the checkpointed weights, optimizer state and data position:
    # the same forward (bf16) and learning rate as the uninterrupted run
    assert rows_part[K + 1]['lr'] == rows_full[K + 1]['lr']
    assert rows_part[K + 1]['loss'] == pytest.approx(rows_full[K + 1]['loss'], rel=1e-3)
    for it in range(K + 2, N + 1):  # later iterations: equal up to non-reproducible CUDA kernels
        assert rows_part[it]['loss'] == pytest.approx(rows_full[it]['loss'], rel=0.05), it


def test_fsdp_world_size_1_trains_saves_and_resumes(demo_cwd, tmp_path, gpu_report):
    cfg = str(CONFIGS / 'tiny_stage2_fsdp_gpu.py')
    rows_full, rows_part, log = _train_kill_resume(demo_cwd, tmp_path, cfg)
    assert 'FSDPStrategy' in log or 'FullyShardedDataParallel' in log, tail(log)
    _check_losses(rows_full, rows_part)
    assert (tmp_path / 'part' / f'iter_{N}.pth').exists()
    gpu_report('fsdp_world1', first_loss=rows_full[1]['loss'], last_loss=rows_full[N]['loss'])


def test_deepspeed_zero2_world_size_1_trains_saves_and_resumes(demo_cwd, tmp_path, gpu_report):
    pytest.importorskip('deepspeed', reason='DeepSpeed is an optional extra (optional.txt)')
    cfg = str(CONFIGS / 'tiny_stage2_deepspeed_gpu.py')
    rows_full, rows_part, _ = _train_kill_resume(demo_cwd, tmp_path, cfg)
    _check_losses(rows_full, rows_part)
    assert (tmp_path / 'part' / f'iter_{N}.pth').exists()
    gpu_report('deepspeed_zero2_world1', first_loss=rows_full[1]['loss'],
               last_loss=rows_full[N]['loss'])  # fmt: skip
