# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""Per-unit overlay drawers: core units registered like plugins, dispatch by unit then field, and
a visible "not drawn" note (never silence) for a field without a drawer."""

import cv2
import numpy as np
import pytest
import torch
from mmengine.structures import InstanceData
from PIL import Image

from mmrefvlm.registry import UNIT_DRAWERS
from mmrefvlm.structures import RefVLMDataSample
from mmrefvlm.visualization import (
    BoxDrawer,
    DepthDrawer,
    KeypointDrawer,
    MaskDrawer,
    RefVLMVisualizationHook,
    UnitDrawer,
    draw_answer,
    draw_instances,
    draw_panels,
    plan_drawing,
)

NAN = float('nan')


@pytest.fixture
def line_drawer():
    """A plugin's drawer, registered for the test only."""

    @UNIT_DRAWERS.register_module()
    class TestLineDrawer(UnitDrawer):
        unit = 'line'
        fields = ('lines',)
        calls: list = []

        def draw(self, canvas, values, colors, scale):
            type(self).calls.append(values['lines'].copy())
            for (p, q), color in zip(values['lines'] * scale, colors, strict=False):
                cv2.line(canvas, tuple(int(v) for v in p), tuple(int(v) for v in q), color, 1)

    yield TestLineDrawer
    UNIT_DRAWERS.module_dict.pop('TestLineDrawer')


def _merged():
    """Entries of four units merged as ``RefVLM.predict`` does (NaN / False fillers)."""
    masks = torch.zeros(4, 16, 20, dtype=torch.bool)
    masks[1, 2:8, 3:9] = True
    kpts = torch.full((4, 2, 3), NAN)
    kpts[2] = torch.tensor([[4.0, 5.0, 1.0], [6.0, 7.0, 0.0]])
    return InstanceData(
        labels=['a', 'b', 'c', 'd'],
        units=['box', 'mask', 'keypoint', 'line'],
        scores=torch.ones(4),
        bboxes=torch.tensor([[1.0, 1.0, 5.0, 5.0], [NAN] * 4, [2.0, 2.0, 9.0, 9.0], [NAN] * 4]),
        masks=masks,
        keypoints=kpts,
        lines=torch.tensor([[[NAN] * 2] * 2] * 3 + [[[1.0, 2.0], [10.0, 12.0]]]),
    )


def test_core_units_are_registered_drawers():
    for cls, unit, fields in [
        (BoxDrawer, 'box', ('bboxes',)),
        (MaskDrawer, 'mask', ('masks',)),
        (KeypointDrawer, 'keypoint', ('keypoints',)),
        (DepthDrawer, 'depth', ('depth',)),
    ]:
        assert UNIT_DRAWERS.get(cls.__name__) is cls and (cls.unit, cls.fields) == (unit, fields)


def test_plan_dispatches_by_unit_then_field_and_reports_the_rest():
    plan = plan_drawing(_merged())
    groups = {type(d).__name__: entries for d, entries in plan.groups}
    # the keypoint entry's box goes to the box drawer (field fallback); filler values are skipped
    assert groups == {
        'MaskDrawer': {'masks': [1]},
        'BoxDrawer': {'bboxes': [0, 2]},
        'KeypointDrawer': {'keypoints': [2]},
    }
    assert [d.order for d, _ in plan.groups] == sorted(d.order for d, _ in plan.groups)
    assert plan.undrawn == {'lines': ['line']}


def test_a_registered_plugin_drawer_draws_its_field(line_drawer):
    inst = _merged()
    plan = plan_drawing(inst)
    assert plan.undrawn == {} and {'lines': [3]} in [e for _, e in plan.groups]
    img = np.zeros((16, 20, 3), np.uint8)
    out = draw_instances(img, inst, scale=2)
    assert len(line_drawer.calls) == 1
    np.testing.assert_array_equal(line_drawer.calls[0], [[[1.0, 2.0], [10.0, 12.0]]])
    assert out.shape == (32, 40, 3) and out[4:24, 2:20].any()


def test_an_unknown_field_is_noted_on_the_overlay_not_dropped():
    img = np.full((24, 40, 3), 60, np.uint8)
    inst = _merged()
    with_note = draw_instances(img, inst, scale=4)
    del inst.lines
    without = draw_instances(img, inst, scale=4)
    changed = np.nonzero((with_note != without).any(-1))
    assert changed[0].min() > 96 - 20 and changed[1].max() < 100  # a label at the bottom-left
    assert (with_note[changed] == 255).any()  # on a white box


def test_a_plugin_unit_with_core_fields_uses_the_core_drawer(line_drawer):
    # a `seg` unit (no drawer of its own) predicting masks: drawn as masks
    inst = InstanceData(labels=['x'], units=['seg'], masks=torch.ones(1, 4, 4, dtype=torch.bool))
    plan = plan_drawing(inst)
    assert [(type(d), e) for d, e in plan.groups] == [(MaskDrawer, {'masks': [0]})]
    # a unit whose own drawer claims a core field gets its own drawer for its entries
    line_drawer.fields = ('lines', 'bboxes')
    try:
        inst = InstanceData(units=['line', 'box'], bboxes=torch.ones(2, 4))
        groups = {type(d).__name__: e for d, e in plan_drawing(inst).groups}
        assert groups == {'TestLineDrawer': {'bboxes': [0]}, 'BoxDrawer': {'bboxes': [1]}}
    finally:
        line_drawer.fields = ('lines',)


def test_unit_fields_say_which_entries_have_a_field():
    inst = InstanceData(
        labels=['a', 'b'],
        units=['box', 'mask'],
        unit_fields=[('bboxes', 'scores'), ('masks', 'scores')],
        bboxes=torch.tensor([[1.0, 1.0, 3.0, 3.0], [NAN] * 4]),
        masks=torch.zeros(2, 4, 4, dtype=torch.bool),  # an empty predicted mask is still its own
    )
    groups = {type(d).__name__: e for d, e in plan_drawing(inst).groups}
    assert groups == {'BoxDrawer': {'bboxes': [0]}, 'MaskDrawer': {'masks': [1]}}


def test_depth_entries_become_panels():
    depth = torch.full((2, 6, 8), NAN)
    depth[1] = torch.linspace(1, 4, 48).view(6, 8)
    inst = InstanceData(labels=['box', 'scene'], units=['box', 'depth'], depth=depth)
    panels = draw_panels(inst, 'pred ')
    assert [t for t, _ in panels] == ['pred depth: scene'] and panels[0][1].shape == (6, 8, 3)


def test_draw_answer_draws_a_plugin_field_of_a_result(line_drawer):
    result = dict(
        text='a line',
        instances=[dict(phrase='a line', unit='line', group=0, lines=[[1, 1], [8, 6]])],
    )
    draw_answer(np.zeros((10, 10, 3), np.uint8), result, min_side=20)
    np.testing.assert_array_equal(line_drawer.calls[-1], [[[1, 1], [8, 6]]])


def test_hook_marks_and_logs_a_field_without_drawer(tmp_path, monkeypatch):
    from mmrefvlm.visualization import hook as hook_module

    logged = []
    monkeypatch.setattr(hook_module, 'print_log', lambda msg, **kwargs: logged.append(msg))
    Image.fromarray(np.zeros((16, 20, 3), np.uint8)).save(tmp_path / 'img.png')
    sample = RefVLMDataSample(metainfo=dict(img_path=str(tmp_path / 'img.png'), record_id='r/1'))
    sample.gt_instances = _merged()
    sample.pred_instances = _merged()
    hook = RefVLMVisualizationHook(str(tmp_path / 'show'), scale=2)
    hook._after_iter(None, 0, outputs=[sample, sample], mode='test')
    assert sorted(p.name for p in (tmp_path / 'show').iterdir()) == ['r_1.png']
    assert len(logged) == 1 and "no drawer for field 'lines'" in logged[0]  # once, not per image


def test_a_prediction_without_entries_draws_the_image_unchanged():
    # e.g. SAM4MLLM's "No object found.": masks (0, H, W), boxes (0, 4), no labels
    img = np.full((6, 8, 3), 90, dtype=np.uint8)
    inst = InstanceData(
        labels=[], masks=torch.zeros(0, 6, 8, dtype=torch.bool), bboxes=torch.zeros(0, 4)
    )
    plan = plan_drawing(inst)
    assert plan.num == 0 and plan.groups == [] and plan.undrawn == {}
    assert (draw_instances(img, inst, scale=1) == img).all()
