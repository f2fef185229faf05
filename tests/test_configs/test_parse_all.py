# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""Every config parses; the tiny demo config also builds its model."""

import glob
import os.path as osp
from pathlib import Path

import pytest
from mmengine.config import Config
from mmengine.model import BaseModel

from mmrefvlm.registry import MODELS

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CONFIGS = sorted(
    glob.glob(osp.join(ROOT, 'configs', '**', '*.py'), recursive=True)
    + glob.glob(osp.join(ROOT, 'projects', '*', 'configs', '**', '*.py'), recursive=True)
)


def _is_base(path: str) -> bool:
    """A ``_base_`` piece (model, data, schedule, runtime), inherited and never run on its own."""
    return '_base_' in Path(osp.relpath(path, ROOT)).parts


BASES = [p for p in CONFIGS if _is_base(p)]
RUNNABLE = [p for p in CONFIGS if not _is_base(p)]
#: What ``tools/train.py`` and ``tools/test.py`` need from a config they are given.
RUNNABLE_KEYS = (
    'model',
    'train_dataloader',
    'train_cfg',
    'optim_wrapper',
    'val_dataloader',
    'val_evaluator',
    'test_dataloader',
    'test_evaluator',
    'default_scope',
)


def _ids(paths):
    return [osp.relpath(p, ROOT) for p in paths]


def test_both_kinds_of_config_exist():
    assert BASES and RUNNABLE, (BASES, RUNNABLE)


@pytest.mark.parametrize('path', BASES, ids=_ids(BASES))
def test_base_config_parses(path):
    Config.fromfile(path)


@pytest.mark.parametrize('path', RUNNABLE, ids=_ids(RUNNABLE))
def test_config_parses(path):
    cfg = Config.fromfile(path)
    missing = [key for key in RUNNABLE_KEYS if key not in cfg]
    assert not missing, f'{osp.relpath(path, ROOT)} lacks {missing}'
    assert cfg.default_scope == 'mmrefvlm'
    model_type = cfg.model.type
    if isinstance(model_type, str):
        model_type = MODELS.get(model_type)
    assert isinstance(model_type, type) and issubclass(model_type, BaseModel), model_type


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
