# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""The project config through the real tools: ``tools/train.py`` (2 steps) then ``tools/test.py``
producing ``point`` predictions and the ``point/*`` metrics."""

import os.path as osp

import numpy as np
import pytest
import torch

from mmrefvlm.testing.tool_helpers import demo_data_root, train_then_test_scripted
from mmrefvlm.visualization import plan_drawing
from projects.example_unit.point_unit import PointUnitDrawer

REPO = osp.dirname(osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))
CONFIG = osp.join(REPO, 'projects', 'example_unit', 'configs', 'refvlm_tiny_point_demo.py')


@pytest.fixture(scope='module')
def demo_root():
    return demo_data_root()


def test_config_adds_the_point_unit():
    from mmrefvlm.apis import load_config

    cfg = load_config(CONFIG)
    assert set(cfg.model.unit_decoders) == {'point'}
    assert cfg.model.loss_weights == dict(llm=1.0, point=1.0)
    assert cfg.custom_imports.imports == ['projects.example_unit.point_unit']
    assert cfg.train_cfg.max_iters <= 1000


def test_train_two_steps_then_test_predicts_points(demo_root, tmp_path, monkeypatch):
    drawn = []
    real_draw = PointUnitDrawer.draw

    def spy(self, canvas, values, colors, scale):
        drawn.append(values['points'].copy())
        return real_draw(self, canvas, values, colors, scale)

    monkeypatch.setattr(PointUnitDrawer, 'draw', spy)
    show = tmp_path / 'show'
    ckpt, metrics, predicted = train_then_test_scripted(
        CONFIG,
        str(tmp_path),
        monkeypatch,
        '<Phrase>the object</Phrase>(<Unit>point</Unit>[0]<REF>).',
        test_args=['--show-dir', str(show)],
    )
    state = torch.load(ckpt, map_location='cpu', weights_only=True)['state_dict']
    assert any(k.startswith('unit_decoders.point.predictor.head.') for k in state)
    assert {'point/acc', 'point/mean_dist', 'point/center_acc'} <= set(metrics)
    assert metrics['point/num_points'] == 2
    assert len(predicted) == 2
    for sample in predicted:
        pred = sample.pred_instances
        h, w = sample.metainfo['ori_shape']
        assert pred.units == ['point'] and pred.points.shape == (1, 2)
        points = pred.points.cpu()  # predictions stay on the model's device (CUDA when present)
        assert (points >= 0).all() and (points <= torch.tensor([w, h])).all()
        # --show-dir drew the predicted point (and the ground truth) through the plugin's drawer
        assert plan_drawing(pred).undrawn == {}
        assert any(np.array_equal(d, points.numpy()) for d in drawn)
    assert len(list(show.glob('*.png'))) == 2 and len(drawn) == 4  # GT + prediction per image
