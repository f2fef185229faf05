# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""The training and test tools on CUDA: bf16 AMP, and train / kill / ``--resume`` / test.

Both run ``tests/data/configs/tiny_stage2_gpu.py`` (box, mask and keypoint decoders, the real
configs' sampler) through ``tools/train.py`` and ``tools/test.py`` in subprocesses that see the GPU.
"""

from __future__ import annotations

import json
import math
import signal
import statistics

import pytest
import torch
from mmengine.config import Config

from tests.test_reliability.conftest import CONFIGS, TRAIN, run_tool, scalars, tail

pytestmark = pytest.mark.gpu

GPU_CFG = str(CONFIGS / 'tiny_stage2_gpu.py')
TEST = TRAIN.replace('train.py', 'test.py')
N, K = 40, 20  # max_iters, and the iteration after which the second run is killed
#: CUDA kernels (atomics in interpolation and index backward) are not bitwise reproducible, so the
#: resumed run's final weights may differ from the uninterrupted run's: ||w_resumed - w_full|| must
#: stay below this fraction of ||w_full - w_K|| (the update of the resumed iterations). A resume
#: that loses the optimizer state, the schedule or the data position moves the weights by a large
#: fraction of the update. The CPU suite checks bitwise equality.
RESUME_REL_TOL = 0.05


def _kill_hook_index() -> int:
    hooks = Config.fromfile(GPU_CFG).custom_hooks
    return next(
        i
        for i, h in enumerate(hooks)
        if getattr(h['type'], '__name__', h['type']) == 'KillAtIterHook'
    )


def test_amp_bf16_loss_is_finite_and_decreases(demo_cwd, tmp_path, gpu_report):
    work = tmp_path / 'amp'
    res = run_tool(
        [TRAIN, GPU_CFG, '--amp', '--work-dir', str(work), '--cfg-options',
         'train_dataloader.batch_size=8'],
        cwd=demo_cwd, log_file=tmp_path / 'amp.log', timeout=400, cuda=True,
    )  # fmt: skip
    assert res.returncode == 0, tail(res.log)
    assert 'NaNGuardAmpOptimWrapper' in res.log or 'AmpOptimWrapper' in res.log, tail(res.log)
    rows = [scalars(work)[i] for i in range(1, N + 1)]
    losses = [r['loss'] for r in rows]
    assert all(math.isfinite(x) for x in losses), losses
    assert all(r['nonfinite_skips'] == 0 for r in rows if 'nonfinite_skips' in r)
    # the LM cross-entropy starts near ln(vocab) and must fall clearly; the total too
    llm = [r['loss_llm'] for r in rows]
    assert statistics.mean(llm[-10:]) < 0.8 * statistics.mean(llm[:5]), llm
    assert statistics.mean(losses[-10:]) < statistics.mean(losses[:10]), losses
    step = statistics.median(r['time'] for r in rows[10:])
    memory = max(r.get('memory', 0) for r in rows)
    assert memory > 0, 'the logger reports CUDA memory on a GPU run'
    gpu_report('amp_bf16_train', step_time_s=step, peak_memory_mb=memory, batch_size=8)


def test_kill_resume_then_test_on_cuda(demo_cwd, tmp_path, gpu_report):
    full, part = tmp_path / 'full', tmp_path / 'part'
    run = lambda args, log: run_tool(  # noqa: E731
        args, cwd=demo_cwd, log_file=tmp_path / log, timeout=400, cuda=True
    )
    res = run([TRAIN, GPU_CFG, '--work-dir', str(full)], 'full.log')
    assert res.returncode == 0, tail(res.log)
    res = run(
        [TRAIN, GPU_CFG, '--work-dir', str(part), '--cfg-options',
         f'custom_hooks.{_kill_hook_index()}.kill_at={K}'],
        'killed.log',
    )  # fmt: skip
    assert res.returncode == -signal.SIGKILL, tail(res.log)
    assert (part / f'iter_{K}.pth').is_file() and not (part / f'iter_{N}.pth').exists()
    res = run([TRAIN, GPU_CFG, '--work-dir', str(part), '--resume'], 'resumed.log')
    assert res.returncode == 0, tail(res.log)
    assert f'resumed epoch: 0, iter: {K}' in res.log, tail(res.log)

    # Iteration K+1 starts from the same weights, optimizer state and batch in both runs: its
    # forward (loss) and schedule (lr) agree to float rounding. Later iterations drift apart by
    # CUDA's non-reproducible backward kernels, so the final weights are compared by the size of
    # their difference relative to the update the last N-K iterations made.
    rows_full, rows_part = scalars(full), scalars(part)
    assert sorted(rows_part) == list(range(1, N + 1))
    assert rows_part[K + 1]['lr'] == rows_full[K + 1]['lr']
    assert rows_part[K + 1]['loss'] == pytest.approx(rows_full[K + 1]['loss'], rel=1e-4)
    a = torch.load(full / f'iter_{N}.pth', weights_only=True, map_location='cpu')
    b = torch.load(part / f'iter_{N}.pth', weights_only=True, map_location='cpu')
    k_state = torch.load(part / f'iter_{K}.pth', weights_only=True, map_location='cpu')
    assert a['state_dict'].keys() == b['state_dict'].keys() and b['meta']['iter'] == N
    diff = update = 0.0
    for name, wa in a['state_dict'].items():
        wb = b['state_dict'][name]
        assert wa.dtype == wb.dtype and wa.shape == wb.shape, name
        if wa.is_floating_point():
            diff += float((wa.double() - wb.double()).pow(2).sum())
            update += float((wa.double() - k_state['state_dict'][name].double()).pow(2).sum())
        else:
            assert torch.equal(wa, wb), name
    rel = math.sqrt(diff / update)
    assert update > 0 and rel < RESUME_REL_TOL, rel

    metrics = {}
    for name, ckpt in (('full', full), ('part', part)):
        res = run([TEST, GPU_CFG, str(ckpt / f'iter_{N}.pth'), '--work-dir',
                   str(tmp_path / f'test_{name}')], f'test_{name}.log')  # fmt: skip
        assert res.returncode == 0, tail(res.log)
        metrics[name] = json.loads((tmp_path / f'test_{name}' / 'metrics.json').read_text())
    assert {'rec/Acc@0.5', 'res/cIoU', 'trp/parse_success'} <= set(metrics['full'])
    assert metrics['part'].keys() == metrics['full'].keys()
    gpu_report('resume_cuda', relative_weight_difference=rel, metrics=metrics)
