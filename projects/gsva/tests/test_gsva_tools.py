# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""The GSVA demo config through ``tools/train.py`` (2 steps) and ``tools/test.py`` in both
evaluation modes (free generation, then teacher-forced on the same checkpoint)."""

import os.path as osp

import pytest
import torch

from mmrefvlm.testing.tool_helpers import demo_data_root, load_tool, train_then_test_scripted

REPO = osp.dirname(osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))
CONFIG = osp.join(REPO, 'projects', 'gsva', 'configs', 'gsva_tiny_demo.py')
CONFIG_TF = osp.join(REPO, 'projects', 'gsva', 'configs', 'gsva_tiny_demo_tf.py')
SUBSET = tuple(f'test_dataloader.dataset.datasets.{i}.indices=1' for i in range(2))
SUBSET_TF = (*SUBSET, 'test_dataloader.dataset.datasets.2.indices=1')
KEYS = ('gIoU', 'cIoU', 'N-acc', 'T-acc')


@pytest.fixture(scope='module')
def demo_root():
    return demo_data_root()


def test_train_two_steps_then_test_in_both_modes(demo_root, tmp_path, monkeypatch):
    ckpt, metrics, predicted = train_then_test_scripted(
        CONFIG,
        str(tmp_path),
        monkeypatch,
        'Sure, the object:[SEG], nothing:[REJ].',
        test_subset=SUBSET,
    )
    state = torch.load(ckpt, map_location='cpu', weights_only=True)['state_dict']
    assert any(k.startswith('unit_decoders.mask.sam.mask_decoder.') for k in state)
    for prefix in ('res', 'gres', 'gsva'):
        keys = ('cIoU', 'mIoU') if prefix == 'res' else KEYS
        assert {f'{prefix}/{k}' for k in keys} <= set(metrics), prefix
    assert [s.task for s in predicted] == ['res', 'gres']
    for sample in predicted:
        assert sample.pred_slots.rejected.tolist() == [False, True]
        h, w = sample.metainfo['ori_shape']
        assert sample.pred_slots.masks.shape == (2, h, w) and not sample.pred_slots.masks[1].any()
    # teacher-forced: the ground-truth answer is fed, no generation
    metrics_tf = load_tool('test').main(
        [CONFIG_TF, ckpt, '--work-dir', str(tmp_path / 'tf'), '--cfg-options', *SUBSET_TF]
    )
    for prefix in ('gsva', 'gsva_code', 'gsva_grouped', 'gsva_grouped_code'):
        assert {f'{prefix}/{k}' for k in KEYS} <= set(metrics_tf), prefix
