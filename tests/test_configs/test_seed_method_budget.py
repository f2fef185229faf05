# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""The seed-method comparison (docs/seed_methods.md) trains every row with the same budget: the
configs themselves must say so, so that `tools/run_demo.py --config CONFIG` reproduces a row."""

import os.path as osp

import pytest
from mmengine.config import Config

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
ROWS = [
    'configs/refvlm/demo_seg_mix.py',
    'projects/lisa/configs/lisa_tiny_demo.py',
    'projects/gsva/configs/gsva_tiny_demo.py',
    'projects/gsva/configs/gsva_tiny_demo_per_dataset.py',
    'projects/sam4mllm/configs/sam4mllm_ppg_tiny_demo.py',
    'projects/sam4mllm/configs/sam4mllm_pqpp_tiny_demo.py',
    'projects/anyref/configs/anyref_tiny_demo.py',
]


def _budget(path):
    cfg = Config.fromfile(osp.join(ROOT, path))
    warm, decay = cfg.param_scheduler
    return dict(
        iters=cfg.train_cfg.max_iters,
        batch=cfg.train_dataloader.batch_size,
        lr=cfg.optim_wrapper.optimizer.lr,
        warmup=(warm.begin, warm.end),
        decay=(decay.begin, decay.end, decay.T_max, decay.eta_min),
        seed=cfg.randomness.seed,
    )


@pytest.mark.parametrize('path', ROWS[1:])
def test_every_row_has_the_refvlm_rows_budget(path):
    assert _budget(path) == _budget(ROWS[0])


def test_the_budget_is_the_documented_one():
    assert _budget(ROWS[0]) == dict(
        iters=1200,
        batch=8,
        lr=1e-3,
        warmup=(0, 120),
        decay=(120, 1200, 1080, 1e-5),
        seed=0,
    )
