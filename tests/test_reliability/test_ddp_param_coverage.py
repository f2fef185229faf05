# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""What DDP with ``find_unused_parameters=False`` needs, checked in one process: for a batch of
any single task (text-only, visual prompt, box, mask, keypoint) every trainable parameter gets a
gradient, thanks to RefVLM's fake inputs for idle decoders and the fake visual prompt."""

from __future__ import annotations

import copy

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import DefaultScope, init_default_scope

from mmrefvlm.datasets import refvlm_collate
from mmrefvlm.registry import DATASETS, MODELS

from .conftest import DIST_CFG, TEXT_TASKS, UNIT_TASKS


@pytest.fixture(scope='module')
def setup(demo_cwd):
    init_default_scope('mmrefvlm')
    cfg = Config.fromfile(DIST_CFG)
    ds_cfg = copy.deepcopy(cfg.train_dataloader.dataset)
    for d in ds_cfg.datasets:
        d.data_root = str(demo_cwd / 'demo_data')
    concat = DATASETS.build(ds_cfg)
    yield cfg, concat
    DefaultScope._instance_dict.pop('mmrefvlm', None)


@pytest.mark.parametrize('pyramid_frozen', [True, False])
def test_every_trainable_param_gets_a_gradient_for_single_task_batches(setup, pyramid_frozen):
    cfg, concat = setup
    model_cfg = copy.deepcopy(cfg.model)
    model_cfg.pyramid_encoder.frozen = pyramid_frozen
    torch.manual_seed(0)
    model = MODELS.build(model_cfg).train()
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert any(n.startswith('pyramid_encoder.') for n in trainable) != pyramid_frozen
    for task, ds in zip(TEXT_TASKS + UNIT_TASKS, concat.datasets, strict=False):
        data = model.data_preprocessor(refvlm_collate([ds[0], ds[1]]), True)
        losses = model(**data, mode='loss')
        model.zero_grad(set_to_none=True)
        sum(losses.values()).backward()
        missing = sorted(
            n for n, p in model.named_parameters() if p.requires_grad and p.grad is None
        )
        assert not missing, f'{task}: {len(missing)} trainable params without grad: {missing[:6]}'
        # every step logs every unit's keys; only the batch's own units are non-zero
        assert {k.split('_')[1] for k in losses if k != 'loss_llm'} == {'box', 'mask', 'keypoint'}
        units = {k.split('_')[1] for k, v in losses.items() if k != 'loss_llm' and v.item() != 0}
        assert units == (
            {'box'}
            if task == 'rec'
            else {'mask'}
            if task == 'res'
            else {'keypoint'}
            if task == 'ig_keypoint'
            else set()
        ), (task, units)
