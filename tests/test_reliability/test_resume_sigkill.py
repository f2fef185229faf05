# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""A run killed with SIGKILL right after the iteration-k checkpoint and resumed with ``--resume``
ends bitwise identical to an uninterrupted run: weights, optimizer state, lr schedule, and the
logged per-iteration losses of iterations k+1..N."""

from __future__ import annotations

import signal

import torch
from mmengine.config import Config

from .conftest import RESUME_CFG, TRAIN, run_tool, scalars, tail

N, K = 8, 3  # max_iters and ckpt_interval of tests/data/configs/tiny_stage2_resume.py
COMPARED = ('loss', 'grad_norm', 'lr')


def _kill_hook_index() -> int:
    hooks = Config.fromfile(RESUME_CFG).custom_hooks
    return next(
        i
        for i, h in enumerate(hooks)
        if getattr(h['type'], '__name__', h['type']) == 'KillAtIterHook'
    )


def _assert_tree_equal(a, b, path='') -> None:
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b), path
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), path
        for k in a:
            _assert_tree_equal(a[k], b[k], f'{path}.{k}')
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _assert_tree_equal(x, y, f'{path}[{i}]')
    else:
        assert a == b, (path, a, b)


def test_sigkill_after_checkpoint_then_resume_is_bitwise_exact(demo_cwd, tmp_path):
    full, part = tmp_path / 'full', tmp_path / 'part'
    res = run_tool(
        [TRAIN, RESUME_CFG, '--work-dir', str(full)],
        cwd=demo_cwd,
        log_file=tmp_path / 'full.log',
        timeout=240,
    )
    assert res.returncode == 0, tail(res.log)

    res = run_tool(
        [
            TRAIN,
            RESUME_CFG,
            '--work-dir',
            str(part),
            '--cfg-options',
            f'custom_hooks.{_kill_hook_index()}.kill_at={K}',
        ],
        cwd=demo_cwd,
        log_file=tmp_path / 'killed.log',
        timeout=240,
    )
    assert res.returncode == -signal.SIGKILL, tail(res.log)
    assert (part / f'iter_{K}.pth').is_file() and not (part / f'iter_{N}.pth').exists()
    assert sorted(scalars(part)) == list(range(1, K + 1))  # died right after iteration K

    res = run_tool(
        [TRAIN, RESUME_CFG, '--work-dir', str(part), '--resume'],
        cwd=demo_cwd,
        log_file=tmp_path / 'resumed.log',
        timeout=240,
    )
    assert res.returncode == 0, tail(res.log)
    assert f'resumed epoch: 0, iter: {K}' in res.log, tail(res.log)

    a = torch.load(full / f'iter_{N}.pth', weights_only=True)
    b = torch.load(part / f'iter_{N}.pth', weights_only=True)
    assert a['meta']['iter'] == b['meta']['iter'] == N
    for key in ('state_dict', 'optimizer', 'param_schedulers'):
        _assert_tree_equal(a[key], b[key], key)
    # the weights moved from the iteration-K state (the comparison is not vacuous)
    k_state = torch.load(part / f'iter_{K}.pth', weights_only=True)['state_dict']
    assert any(not torch.equal(k_state[n], b['state_dict'][n]) for n in k_state)

    rows_full, rows_part = scalars(full), scalars(part)
    assert sorted(rows_full) == sorted(rows_part) == list(range(1, N + 1))
    for it in range(K + 1, N + 1):
        keys = [k for k in rows_full[it] if k.startswith('loss') or k in COMPARED]
        assert set(keys) <= set(rows_part[it]), (it, keys)
        for k in keys:
            assert rows_full[it][k] == rows_part[it][k], (it, k, rows_full[it][k], rows_part[it][k])
