# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""The synthetic decoder inputs used by the contract suite follow the gt_units schema."""

import pytest
import torch

from mmrefvlm.models.unit_decoders.layers import valid_region_mask
from mmrefvlm.testing import (
    CORE_SYNTHETIC_TARGETS,
    UnitDecoderContract,
    demo_unit_inputs,
    pad_unit_inputs,
    swap_targets,
)


@pytest.mark.parametrize('unit', ['box', 'mask', 'keypoint', 'depth'])
def test_demo_inputs_are_seeded_and_inside_the_image(unit):
    q1, v1, s1 = demo_unit_inputs(unit, num_queries=(3, 1, 2), seed=5)
    q2, v2, s2 = demo_unit_inputs(unit, num_queries=(3, 1, 2), seed=5)
    assert torch.equal(q1.embeds, q2.embeds) and torch.equal(v1.clip, v2.clip)
    assert q1.mask.sum(1).tolist() == [3, 1, 2] and q1.mask.shape == (3, 4)
    assert q1.group_ids[0].tolist() == [0, 0, 1, -1] and not q1.embeds[~q1.mask].any()
    for b, (sample, other) in enumerate(zip(s1, s2, strict=True)):
        h, w = sample.metainfo['ori_shape']
        assert sample.metainfo['square_size'] == max(h, w)
        torch.testing.assert_close(v1.valid_hw[b], torch.tensor([h, w]) / max(h, w))
        gt = sample.gt_units.get(unit)
        for key in gt.keys():
            assert torch.equal(gt.get(key), other.gt_units.get(unit).get(key))
        vh, vw = v1.valid_hw[b].tolist()
        if unit in ('box', 'keypoint'):
            boxes = gt.bboxes
            assert (boxes[:, 2] <= vw + 1e-6).all() and (boxes[:, 3] <= vh + 1e-6).all()
        if unit == 'mask':
            outside = ~valid_region_mask(v1.valid_hw[b : b + 1], 32, 32)
            assert not (gt.masks & outside).any() and gt.masks.flatten(1).any(1).all()
        if unit == 'keypoint':
            unlabelled = gt.keypoints[..., 2] == 0
            assert not gt.keypoints[..., :2][unlabelled].any()
        if unit == 'depth':
            outside = ~valid_region_mask(v1.valid_hw[b : b + 1], 32, 32)
            assert not (gt.valid & outside).any() and (gt.depth[gt.valid] > 0).all()


def test_pad_and_swap_helpers():
    queries, visual, samples = demo_unit_inputs('box', num_queries=(2, 1))
    pq, pv, ps = pad_unit_inputs(queries, visual, samples, extra_slots=2, extra_samples=1)
    assert pq.embeds.shape[:2] == (3, 5) and len(ps) == 3 and pv.clip.shape[0] == 3
    assert torch.equal(pq.embeds[:2, :3][queries.mask], queries.embeds[queries.mask])
    assert pq.mask.sum() == queries.mask.sum() and pq.embeds[~pq.mask].abs().sum() > 0
    swapped = swap_targets(samples, 'box', 0, 0, 1)
    old, new = samples[0].gt_units.box, swapped[0].gt_units.box
    assert torch.equal(new.bboxes, old.bboxes[[1, 0]])
    assert torch.equal(new.group_ids, old.group_ids)


def _line_targets(frame):
    """A plugin unit's declared targets: the diagonal of each random box, (N, 2, 2)."""
    return dict(lines=frame.boxes.view(frame.num, 2, 2).clone())


def test_plugin_units_declare_their_synthetic_targets():
    with pytest.raises(ValueError, match='targets=fn'):
        demo_unit_inputs('line')
    q, v, samples = demo_unit_inputs('line', num_queries=(3, 1), targets=_line_targets, seed=2)
    _, _, boxes = demo_unit_inputs('box', num_queries=(3, 1), seed=2)
    for sample, box_sample in zip(samples, boxes, strict=True):
        gt = sample.gt_units.line
        assert set(gt.keys()) == {'lines', 'group_ids', 'instance_ids'}
        # the frame's boxes are drawn first, as for every unit: same seed, same geometry
        assert torch.equal(gt.lines.flatten(1), box_sample.gt_units.box.bboxes)
    assert set(CORE_SYNTHETIC_TARGETS) == {'box', 'mask', 'keypoint', 'depth'}


def test_the_contract_builds_inputs_from_the_declared_targets():
    class WithStatic(UnitDecoderContract):
        unit = 'line'
        synthetic_targets = staticmethod(_line_targets)

    class WithPlainFunction(UnitDecoderContract):
        unit = 'line'
        synthetic_targets = _line_targets

    for cls in (WithStatic, WithPlainFunction):
        _, _, samples = cls().make_inputs(num_queries=(2,))
        assert samples[0].gt_units.line.lines.shape == (2, 2, 2)
