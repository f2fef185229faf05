# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""Group cost builders: per-pair references written out here, and mmdet's match costs.

mmdet conventions (``mmdet/models/task_modules/assigners/match_cost.py``, v3.3.0) and how we relate:
* ``BBoxL1Cost(box_format='xywh')`` takes pixel xyxy, converts to cxcywh and divides by the image
  size: equal to our L1 on normalised cxcywh.
* ``IoUCost(iou_mode='giou')`` returns ``-GIoU`` of pixel xyxy boxes: GIoU is invariant to per-axis
  scaling, so equal to ours on normalised boxes.
* ``FocalLossCost(binary_input=True)`` is the pixel-mean focal loss computed with
  ``log(p + 1e-12)`` instead of our softplus form: equal up to that eps (no valid-pixel mask there).
* ``DiceCost(pred_act=True, naive_dice=True)`` uses eps=1e-3 by default; we default to eps=1
  (Mask2Former / REF-VLM), so the comparison passes ``eps=1.``.
"""

import math

import pytest
import torch

from mmrefvlm.models.matchers import (
    GroupedCosts,
    box_group_costs,
    mask_group_costs,
    pad_by_group,
    point_group_costs,
)


def random_keys(gen, num_groups=5, max_size=6):
    sizes = torch.randint(1, max_size + 1, (num_groups,), generator=gen)
    keys = torch.repeat_interleave(torch.arange(num_groups) * 7 + 3, sizes)
    return keys[torch.randperm(keys.numel(), generator=gen)]  # groups interleaved in the batch


def pairs_in_groups(keys):
    """All (i, j) item pairs sharing a group, with their (g, a, b) position in the padded costs."""
    _, _, slots = pad_by_group(keys, keys)
    num_slots = int(torch.unique(keys, return_counts=True)[1].max())
    for i in range(keys.numel()):
        for j in range(keys.numel()):
            if keys[i] == keys[j]:
                g, a = divmod(int(slots[i]), num_slots)
                yield i, j, (g, a, int(slots[j]) % num_slots)


def ref_box_cost(p, t, l1_w, giou_w):
    """One pair, written from the definitions."""
    l1 = sum(abs(float(p[k] - t[k])) for k in range(4))

    def xyxy(b):
        return (
            float(b[0] - b[2] / 2),
            float(b[1] - b[3] / 2),
            float(b[0] + b[2] / 2),
            float(b[1] + b[3] / 2),
        )

    (a1, b1, a2, b2), (c1, d1, c2, d2) = xyxy(p), xyxy(t)
    inter = max(0.0, min(a2, c2) - max(a1, c1)) * max(0.0, min(b2, d2) - max(b1, d1))
    union = (a2 - a1) * (b2 - b1) + (c2 - c1) * (d2 - d1) - inter
    hull = (max(a2, c2) - min(a1, c1)) * (max(b2, d2) - min(b1, d1))
    giou = inter / union - (hull - union) / hull
    return l1_w * l1 - giou_w * giou


def ref_mask_cost(logit, tgt, valid, focal_w, dice_w, alpha=0.25, gamma=2.0, eps=1.0):
    """One pair, pixel by pixel."""
    focal, inter, psum, tsum, count = 0.0, 0.0, 0.0, 0.0, 0
    for x, t, v in zip(logit.tolist(), tgt.float().tolist(), valid.float().tolist(), strict=True):
        if not v:
            continue
        p = 1 / (1 + math.exp(-x))
        if t:
            focal += -alpha * (1 - p) ** gamma * math.log(p)
        else:
            focal += -(1 - alpha) * p**gamma * math.log(1 - p)
        inter, psum, tsum, count = inter + p * t, psum + p, tsum + t, count + 1
    focal /= max(count, 1)
    dice = 1 - (2 * inter + eps) / (psum + tsum + eps)
    return focal_w * focal + dice_w * dice


def random_boxes(gen, num):
    cxcy = torch.rand(num, 2, generator=gen) * 0.6 + 0.2
    wh = torch.rand(num, 2, generator=gen) * 0.3 + 0.02
    return torch.cat([cxcy, wh], dim=1)


@pytest.mark.parametrize('seed', [0, 1, 2])
def test_box_group_costs_match_per_pair_reference(seed):
    gen = torch.Generator().manual_seed(seed)
    keys = random_keys(gen)
    preds, tgts = random_boxes(gen, keys.numel()), random_boxes(gen, keys.numel())
    out = box_group_costs(preds, tgts, keys, l1_weight=5.0, giou_weight=2.0)
    assert isinstance(out, GroupedCosts) and out.costs.dtype == torch.float32
    for i, j, (g, a, b) in pairs_in_groups(keys):
        assert float(out.costs[g, a, b]) == pytest.approx(
            ref_box_cost(preds[i], tgts[j], 5.0, 2.0), abs=1e-5
        )
    # Outside each group's block the padded entries are zero.
    num_slots = out.costs.shape[1]
    for g, n in enumerate(out.sizes.tolist()):
        assert not out.costs[g, n:, :].any() and not out.costs[g, :, n:].any()
        assert n <= num_slots


@pytest.mark.parametrize('seed', [0, 1])
@pytest.mark.parametrize('with_valid', [False, True])
def test_mask_group_costs_match_per_pair_reference(seed, with_valid):
    gen = torch.Generator().manual_seed(seed)
    # Sizes 1..7 span several of the builder's size classes (1, 2, 3-4, 5-8).
    keys = random_keys(gen, num_groups=8, max_size=7)
    num, height, width = keys.numel(), 5, 6
    logits = torch.randn(num, height, width, generator=gen) * 3
    tgts = torch.rand(num, height, width, generator=gen) > 0.6
    valid = torch.ones(num, height, width, dtype=torch.bool)
    if with_valid:  # per-target valid region (image + bottom/right padding)
        for m in range(num):
            valid[m, int(torch.randint(2, height + 1, (1,), generator=gen)) :] = False
            valid[m, :, int(torch.randint(2, width + 1, (1,), generator=gen)) :] = False
    out = mask_group_costs(
        logits, tgts, keys, focal_weight=20.0, dice_weight=1.0, valid=valid if with_valid else None
    )
    inside = torch.zeros_like(out.costs, dtype=torch.bool)
    for i, j, (g, a, b) in pairs_in_groups(keys):
        ref = ref_mask_cost(logits[i].flatten(), tgts[j].flatten(), valid[j].flatten(), 20.0, 1.0)
        assert float(out.costs[g, a, b]) == pytest.approx(ref, rel=1e-4, abs=1e-5)
        inside[g, a, b] = True
    assert not out.costs[~inside].any()  # outside every group's block: exactly 0


@pytest.mark.parametrize('with_visibility', [False, True])
def test_point_group_costs_match_per_pair_reference(with_visibility):
    gen = torch.Generator().manual_seed(4)
    keys = random_keys(gen, num_groups=4, max_size=4)
    num, joints = keys.numel(), 5
    preds = torch.rand(num, joints, 2, generator=gen)
    tgts = torch.rand(num, joints, 2, generator=gen)
    visible = torch.rand(num, joints, generator=gen) > 0.4 if with_visibility else None
    if with_visibility:
        visible[0] = False  # a target without labelled points costs 0
    out = point_group_costs(preds, tgts, keys, tgt_visible=visible, weight=2.0)
    for i, j, (g, a, b) in pairs_in_groups(keys):
        vis = visible[j] if with_visibility else torch.ones(joints, dtype=torch.bool)
        dists = [float((preds[i, k] - tgts[j, k]).abs().sum()) for k in range(joints) if vis[k]]
        ref = 2.0 * sum(dists) / len(dists) if dists else 0.0
        assert float(out.costs[g, a, b]) == pytest.approx(ref, abs=1e-5)


def test_builders_are_detached_and_float32():
    gen = torch.Generator().manual_seed(0)
    keys = torch.tensor([0, 0, 1])
    preds = random_boxes(gen, 3).bfloat16().requires_grad_()
    out = box_group_costs(preds, random_boxes(gen, 3), keys)
    assert out.costs.dtype == torch.float32 and not out.costs.requires_grad
    summed = out + box_group_costs(preds, random_boxes(gen, 3), keys)
    assert summed.costs.shape == out.costs.shape
    with pytest.raises(ValueError, match='same length'):
        box_group_costs(preds, random_boxes(gen, 2), keys)
    with pytest.raises(ValueError, match='same number of pixels'):
        mask_group_costs(torch.rand(3, 4, 4), torch.rand(3, 4, 5) > 0.5, keys)


def test_degenerate_boxes_give_finite_costs():
    boxes = torch.tensor([[0.5, 0.5, 0.0, 0.0], [0.5, 0.5, 0.0, 0.0]])
    out = box_group_costs(boxes, boxes, torch.tensor([0, 0]))
    assert torch.isfinite(out.costs).all()


@pytest.fixture(scope='module')
def mmdet_costs():
    pytest.importorskip('mmrefvlm')  # installs the mmcv-lite ops guard before mmdet imports
    match_cost = pytest.importorskip('mmdet.models.task_modules.assigners.match_cost')
    return match_cost


def test_box_costs_equal_mmdet(mmdet_costs):
    from mmengine.structures import InstanceData

    gen = torch.Generator().manual_seed(11)
    keys = torch.zeros(6, dtype=torch.long)  # one group: costs[0] is the full pairwise matrix
    preds, tgts = random_boxes(gen, 6), random_boxes(gen, 5).repeat(2, 1)[:6]
    img_h, img_w = 480.0, 640.0
    scale = torch.tensor([img_w, img_h, img_w, img_h])

    def to_pixel_xyxy(b):
        return torch.cat([b[:, :2] - b[:, 2:] / 2, b[:, :2] + b[:, 2:] / 2], dim=1) * scale

    pred_inst = InstanceData(bboxes=to_pixel_xyxy(preds))
    gt_inst = InstanceData(bboxes=to_pixel_xyxy(tgts))
    meta = dict(img_shape=(img_h, img_w))
    l1 = mmdet_costs.BBoxL1Cost(box_format='xywh')(pred_inst, gt_inst, meta)
    giou = mmdet_costs.IoUCost(iou_mode='giou')(pred_inst, gt_inst, meta)
    ours_l1 = box_group_costs(preds, tgts, keys, l1_weight=1.0, giou_weight=0.0).costs[0]
    ours_giou = box_group_costs(preds, tgts, keys, l1_weight=0.0, giou_weight=1.0).costs[0]
    torch.testing.assert_close(ours_l1, l1, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(ours_giou, giou, atol=1e-5, rtol=1e-5)


def test_mask_costs_equal_mmdet(mmdet_costs):
    from mmengine.structures import InstanceData

    gen = torch.Generator().manual_seed(12)
    keys = torch.zeros(4, dtype=torch.long)
    logits = torch.randn(4, 8, 8, generator=gen) * 2
    tgts = torch.rand(4, 8, 8, generator=gen) > 0.5
    focal = mmdet_costs.FocalLossCost(binary_input=True)(
        InstanceData(masks=logits), InstanceData(masks=tgts.long())
    )
    dice = mmdet_costs.DiceCost(pred_act=True, naive_dice=True, eps=1.0)(
        InstanceData(masks=logits), InstanceData(masks=tgts)
    )
    ours_focal = mask_group_costs(logits, tgts, keys, focal_weight=1.0, dice_weight=0.0).costs[0]
    ours_dice = mask_group_costs(logits, tgts, keys, focal_weight=0.0, dice_weight=1.0).costs[0]
    torch.testing.assert_close(ours_focal, focal, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(ours_dice, dice, atol=1e-6, rtol=1e-5)
