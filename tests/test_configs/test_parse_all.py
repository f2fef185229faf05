# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""Every config parses; the tiny demo config also builds its model."""

import glob
import os.path as osp

import pytest
from mmengine.config import Config

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CONFIGS = sorted(
    glob.glob(osp.join(ROOT, 'configs', '**', '*.py'), recursive=True)
    + glob.glob(osp.join(ROOT, 'projects', '*', 'configs', '**', '*.py'), recursive=True)
)


@pytest.mark.parametrize('path', CONFIGS, ids=[osp.relpath(p, ROOT) for p in CONFIGS])
def test_config_parses(path):
    cfg = Config.fromfile(path)
    if osp.basename(path).startswith('_') or '/_base_/' in path:
        return
    assert 'model' in cfg or '_base_' in path


def test_stage_configs_carry_paper_hyper_parameters():
    s1 = Config.fromfile(osp.join(ROOT, 'configs/refvlm/stage1.py'))
    s2 = Config.fromfile(osp.join(ROOT, 'configs/refvlm/stage2.py'))
    s3 = Config.fromfile(osp.join(ROOT, 'configs/refvlm/stage3_keypoint.py'))
    assert (
        s1.optim_wrapper.optimizer.lr,
        s2.optim_wrapper.optimizer.lr,
        s3.optim_wrapper.optimizer.lr,
    ) == (1e-5, 2e-6, 2e-5)  # App. D, Table 14
    for cfg in (s1, s2, s3):
        assert cfg.optim_wrapper.optimizer.weight_decay == 0
        assert cfg.optim_wrapper.clip_grad.max_norm == 1.0
        warm = cfg.param_scheduler[0]
        assert warm.end == int(0.03 * cfg.train_cfg.max_iters)
        assert cfg.train_dataloader.batch_size == 16
    assert s1.model.freeze_llm and not s1.model.unit_decoders
    assert set(s2.model.unit_decoders) == {'box', 'mask'}
    assert s2.model.loss_weights == dict(llm=1.0, box=0.5, mask=0.5)
    assert set(s3.model.unit_decoders) == {'keypoint'}
    # data roots are config variables, never absolute paths
    for cfg in (s1, s2, s3):
        for ds in cfg.train_dataloader.dataset.datasets:
            assert not osp.isabs(ds.data_root) and not osp.isabs(ds.ann_file)
