# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""The CUDA paths of the paper-scale benchmarks (``benchmarks/gpu_paper_scale.sh``) on tiny
random-init models: AMP training steps with peak memory and its phases, the memory-model
comparison, the FLOP-counter cross-check, generation, and the grouped matching on the GPU."""

from __future__ import annotations

import json
import math
import os.path as osp

import pytest
import torch

pytestmark = pytest.mark.gpu

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CONFIGS = osp.join(ROOT, 'configs', 'refvlm')
TINY = ['--device', 'cuda', '--random-init', '--tiny']


@pytest.mark.parametrize('config', ['stage2_lora.py', 'stage2.py'])
def test_train_step_on_cuda(config, tmp_path, gpu_report):
    from benchmarks import paper_scale

    name = str(tmp_path / 'train')
    argv = ['--config', osp.join(CONFIGS, config), *TINY, '--batch-sizes', '1', '2']
    paper_scale.main(argv + ['--steps', '2', '--warmup', '1', '--name', name])
    out = json.loads(open(name + '.json').read())
    assert out['optim_wrapper'] == 'NaNGuardAmpOptimWrapper'
    for p in out['points']:
        assert p['status'] == 'ok', p
        assert p['peak_bytes'] > p['allocated_between_steps'] > 0
        assert {'forward', 'backward', 'optimizer step'} <= set(p['phase_peak_bytes'])
        assert max(p['phase_peak_bytes'].values()) == p['peak_bytes']
        assert math.isfinite(p['memory_model']['rel_diff'])
        assert p['mfu'] > 0 and p['nonfinite_skips'] == 0
    check = out['points'][0]['flop_counter_step']
    assert 'measured' in check, check
    gpu_report(
        f'bench_{config[:-3]}_tiny',
        step_ms=1e3 * out['points'][-1]['step_s']['median'],
        flop_ratio=check['ratio_to_hardware_formula'],
    )


def test_generation_on_cuda(tmp_path):
    from benchmarks import paper_inference

    name = str(tmp_path / 'inference')
    argv = ['--config', osp.join(CONFIGS, 'stage2.py'), *TINY, '--batch-sizes', '1', '2']
    paper_inference.main(argv + ['--max-new-tokens', '4', '--repeats', '1', '--name', name])
    out = json.loads(open(name + '.json').read())
    assert all(r['status'] == 'ok' for r in out['results'].values()), out['results']
    assert out['throughput_ratio']['B=2/B=1'] > 0


def test_grouped_matching_on_cuda():
    from benchmarks import bench_matching as bm

    device = torch.device('cuda')
    for case, size in (('box', 64), ('mask', 16)):
        res = bm.run_case(case, bm.on_device(bm.make_workload(0, mask_size=size), device), 2)
        assert res['same_total_cost'], res['total_matched_cost']
