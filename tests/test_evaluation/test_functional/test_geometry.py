# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
import itertools

import numpy as np
import pytest
import torch

from mmrefvlm.evaluation.functional import (
    box_iou,
    depth_errors,
    greedy_paired_ious,
    mask_inter_union,
    mask_iou,
    match_one_to_one,
    union_mask,
)


def _random_boxes(rng, n, size=50.0):
    xy = rng.uniform(0, size, (n, 2))
    wh = rng.uniform(1, size / 2, (n, 2))
    return np.concatenate([xy, xy + wh], 1)


def test_box_iou_equals_mmdet_bbox_overlaps():
    bbox_overlaps = pytest.importorskip('mmdet.structures.bbox').bbox_overlaps
    rng = np.random.default_rng(0)
    a, b = _random_boxes(rng, 7), _random_boxes(rng, 5)
    ref = bbox_overlaps(torch.from_numpy(a), torch.from_numpy(b)).numpy()
    np.testing.assert_allclose(box_iou(torch.from_numpy(a), b), ref, rtol=1e-9, atol=1e-12)


def test_box_iou_hand_values():
    # [0,0,2,2] vs [1,1,3,3]: I = 1, U = 7; disjoint -> 0; identical -> 1.
    iou = box_iou([[0, 0, 2, 2]], [[1, 1, 3, 3], [5, 5, 6, 6], [0, 0, 2, 2]])
    np.testing.assert_allclose(iou, [[1 / 7, 0.0, 1.0]])


def test_mask_iou_brute_force():
    rng = np.random.default_rng(1)
    a = rng.random((3, 6, 7)) > 0.5
    b = rng.random((4, 6, 7)) > 0.5
    b[3] = False
    a[2] = False  # empty vs empty -> union 0 -> IoU 0
    brute = np.array(
        [[(x & y).sum() / (x | y).sum() if (x | y).sum() else 0.0 for y in b] for x in a]
    )
    np.testing.assert_allclose(mask_iou(torch.from_numpy(a), b), brute)
    inter, union = mask_inter_union(a, b)
    assert inter[0, 0] == (a[0] & b[0]).sum() and union[0, 0] == (a[0] | b[0]).sum()
    with pytest.raises(ValueError, match='differ'):
        mask_iou(a, b[:, :5])


def test_union_mask_empty_and_stack():
    assert union_mask(None, (2, 3)).shape == (2, 3) and not union_mask(None, (2, 3)).any()
    assert not union_mask(np.zeros((0, 4, 5), bool), (9, 9)).any()
    m = np.zeros((2, 2, 2), bool)
    m[0, 0, 0] = m[1, 1, 1] = True
    assert union_mask(torch.from_numpy(m), (2, 2)).sum() == 2


def _best_tp_brute(iou, thr):
    """Max number of pairs with IoU >= thr over all one-to-one assignments."""
    p, g = iou.shape
    best = 0
    for perm in itertools.permutations(range(max(p, g)), p) if p <= g else []:
        best = max(best, sum(iou[i, perm[i]] >= thr for i in range(p) if perm[i] < g))
    if p > g:
        return _best_tp_brute(iou.T, thr)
    return best


@pytest.mark.parametrize('seed', range(6))
def test_hungarian_maximises_matches(seed):
    rng = np.random.default_rng(seed)
    iou = rng.random((rng.integers(1, 5), rng.integers(1, 5)))
    pairs = match_one_to_one(iou, 0.5, 'hungarian')
    assert len({p for p, _ in pairs}) == len(pairs) == len({g for _, g in pairs})
    assert all(iou[p, g] >= 0.5 for p, g in pairs)
    assert len(pairs) == _best_tp_brute(iou, 0.5)


def test_greedy_vs_hungarian_differ_on_crossed_case():
    # Greedy takes (0, 0) = 0.9 first and leaves pred 1 without an eligible target; Hungarian
    # finds two matches (0 -> 1, 1 -> 0).
    iou = np.array([[0.9, 0.6], [0.7, 0.1]])
    assert match_one_to_one(iou, 0.5, 'greedy') == [(0, 0)]
    assert match_one_to_one(iou, 0.5, 'hungarian') == [(1, 0), (0, 1)]
    with pytest.raises(ValueError, match='unknown matcher'):
        match_one_to_one(iou, 0.5, 'nearest')


def test_glamm_greedy_pairing():
    iou = np.array([[0.9, 0.8, 0.0], [0.85, 0.3, 0.0]])
    # 0.9 (0,0) first; the remaining [[0.3, 0.0]] pairs 0.3; the last column stays unpaired.
    assert greedy_paired_ious(iou) == pytest.approx([0.9, 0.3])
    assert greedy_paired_ious(np.zeros((2, 0))) == []


def test_depth_errors_hand_computed():
    gt = np.array([[1.0, 2.0], [4.0, 0.0]])  # last pixel invalid
    pred = np.array([[1.1, 2.0], [2.0, 7.0]])
    out = depth_errors(pred, gt)
    # |d|/gt: 0.1, 0, 0.5 -> mean 0.2; squared: 0.01, 0, 4 -> sqrt(4.01/3);
    # ratios 1.1, 1, 2 -> 2 of 3 below 1.25.
    assert out['abs_rel'] == pytest.approx(0.2)
    assert out['rmse'] == pytest.approx(np.sqrt(4.01 / 3))
    assert out['delta1'] == pytest.approx(2 / 3)
    assert out['num_valid'] == 3
    assert depth_errors(pred, np.zeros((2, 2))) is None
    # A zero prediction is clamped to min_depth, not a division by zero.
    assert depth_errors(np.zeros((1, 1)), np.ones((1, 1)), min_depth=0.5)['abs_rel'] == 0.5
