# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""The SAM4MLLM configs through ``tools/train.py`` (2 steps) and ``tools/test.py``: the SAM
fine-tuning config, then PPG and PQPP with a scripted round-1 answer (the 2-step model's round 2,
SAM and the metrics run for real)."""

import os.path as osp

import pytest
import torch

from mmrefvlm.testing.tool_helpers import demo_data_root, load_tool, train_then_test_scripted
from projects.sam4mllm.sam4mllm_seg import SAM4MLLM

REPO = osp.dirname(osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))
CONFIGS = osp.join(REPO, 'projects', 'sam4mllm', 'configs')
SUBSET = (
    'test_dataloader.dataset.datasets.0.indices=1',
    'test_dataloader.dataset.datasets.1.indices=1',
)


@pytest.fixture(scope='module')
def demo_root():
    return demo_data_root()


def test_sam_finetune_config(demo_root, tmp_path):
    config = osp.join(CONFIGS, 'sam4mllm_tiny_sam_demo.py')
    opts = [
        'train_cfg.max_iters=2',
        'default_hooks.checkpoint.interval=2',
        'train_dataloader.batch_size=2',
        'test_dataloader.batch_size=2',
        'test_dataloader.dataset.indices=2',
    ]
    load_tool('train').main([config, '--work-dir', str(tmp_path), '--cfg-options', *opts])
    ckpt = str(tmp_path / 'iter_2.pth')
    state = torch.load(ckpt, map_location='cpu', weights_only=True)['state_dict']
    assert any(k.startswith('sam.sam.mask_decoder.') for k in state)
    metrics = load_tool('test').main(
        [config, ckpt, '--work-dir', str(tmp_path), '--cfg-options', *opts]
    )
    assert {'sam/mIoU', 'sam/cIoU', 'sam/box_only_mIoU'} <= set(metrics)


@pytest.mark.parametrize(
    'variant,answer',
    [('ppg', '[10,20,60,80] (30,40,1)'), ('pqpp', '[10,20,60,80]')],
)
def test_train_two_steps_then_test(demo_root, tmp_path, monkeypatch, variant, answer):
    predicted = []
    real = SAM4MLLM.predict

    def record(self, inputs, data_samples):
        out = real(self, inputs, data_samples)
        predicted.extend(out)
        return out

    monkeypatch.setattr(SAM4MLLM, 'predict', record)
    opts = (
        *SUBSET,
        'val_cfg=None',  # no end-of-training validation on the full split
        'val_dataloader=None',
        'val_evaluator=None',
        'model.sam.checkpoint=None',
        *(f'train_dataloader.dataset.datasets.{i}.pipeline.2.labels=None' for i in range(3)),
    )
    ckpt, metrics, _ = train_then_test_scripted(
        osp.join(CONFIGS, f'sam4mllm_{variant}_tiny_demo.py'),
        str(tmp_path),
        monkeypatch,
        answer,
        test_subset=opts,
    )
    state = torch.load(ckpt, map_location='cpu', weights_only=True)['state_dict']
    assert not any(k.startswith('unit_decoders.') for k in state)
    assert {'res/cIoU', 'res/mIoU', 'gres/gIoU', 'gres/cIoU', 'gres/N-acc'} <= set(metrics)
    assert [s.task for s in predicted] == ['res', 'gres']
    for sample in predicted:
        h, w = sample.metainfo['ori_shape']
        assert sample.pred_text == answer and not sample.warnings
        assert sample.pred_instances.masks.shape == (1, h, w)
        if variant == 'ppg':
            assert [p[2] for p in sample.pred_prompts[0].points] == [1]
        else:  # PQPP: the grid points answered with confidence (0..25)
            assert len(sample.pred_prompts[0].points) <= 25
            assert sample.timing['point_query'] > 0
