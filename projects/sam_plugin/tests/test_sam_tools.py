# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""The tiny SAM config end to end: ``tools/train.py`` for a few steps on CPU, then ``tools/test.py``
predicting masks with the SAM decoder from the trained checkpoint."""

import os.path as osp

import numpy as np
import pytest
import torch

from mmrefvlm.testing.tool_helpers import demo_data_root, train_then_test_scripted
from mmrefvlm.visualization import MaskDrawer, plan_drawing

REPO = osp.dirname(osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))
CONFIG = osp.join(REPO, 'projects', 'sam_plugin', 'configs', 'refvlm_tiny_sam_demo.py')


@pytest.fixture(scope='module')
def demo_root():
    return demo_data_root()


def test_train_few_steps_then_test_predicts_masks(demo_root, tmp_path, monkeypatch):
    # The SAM unit is the core `mask` unit: --show-dir draws it with the registered mask drawer.
    drawn = []
    real_draw = MaskDrawer.draw

    def spy(self, canvas, values, colors, scale):
        drawn.append(values['masks'].copy())
        return real_draw(self, canvas, values, colors, scale)

    monkeypatch.setattr(MaskDrawer, 'draw', spy)
    show = tmp_path / 'show'
    ckpt, metrics, predicted = train_then_test_scripted(
        CONFIG,
        str(tmp_path),
        monkeypatch,
        '<Phrase>the object</Phrase>(<Unit>mask</Unit>[0]<REF>).',
        test_args=['--show-dir', str(show)],
    )
    state = torch.load(ckpt, map_location='cpu', weights_only=True)['state_dict']
    assert any(k.startswith('unit_decoders.mask.sam.mask_decoder.') for k in state)
    assert {'res/mIoU', 'res/cIoU'} <= set(metrics)
    assert len(predicted) == 2
    for sample in predicted:
        pred = sample.pred_instances
        assert pred.units == ['mask']
        h, w = sample.metainfo['ori_shape']
        assert pred.masks.shape == (1, h, w) and pred.masks.dtype == torch.bool
        assert plan_drawing(pred).undrawn == {}
        if pred.masks.any():  # an empty mask has nothing to draw
            assert any(np.array_equal(d, pred.masks.cpu().numpy()) for d in drawn)
    assert len(list(show.glob('*.png'))) == 2 and drawn  # the GT masks at least
