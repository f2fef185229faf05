# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""Each decoder's matcher picks the within-group assignment that minimises the decoder's own loss.

The matching cost and the loss are written in two places (``box_group_costs`` on cxcywh targets,
``mask_group_costs`` at ``match_size``, SILog on log-depth...). If the two disagree on the
parametrisation (xyxy against cxcywh, linear against log depth, logits against probabilities), the
matcher optimises something else and the loss is no longer minimal over the assignments it is
allowed to choose. Only hand cases that happened to agree covered this. Here the decoder's real
loss is compared with its loss under every within-group assignment (its two-phase loss given each
target order in turn instead of the solver's), on random predictions.
"""

import itertools
from unittest import mock

import pytest
import torch

import mmrefvlm.models.unit_decoders  # noqa: F401  (registers the decoders)
from mmrefvlm.registry import MODELS
from mmrefvlm.testing import demo_unit_inputs, tiny_decoder_cfg

# sample 0: two groups of two; sample 1: one group of two (2! x 2! x 2! = 8 assignments)
GROUP_IDS = ([0, 0, 1, 1], [4, 4])


def _assignments(keys):
    """Every target order that permutes items only inside their group (``keys``: (M,))."""
    groups = {}
    for i, k in enumerate(keys.tolist()):
        groups.setdefault(k, []).append(i)
    members = list(groups.values())
    for perms in itertools.product(*(itertools.permutations(m) for m in members)):
        order = list(range(len(keys)))
        for items, perm in zip(members, perms, strict=True):
            for i, j in zip(items, perm, strict=True):
                order[i] = j
        yield torch.tensor(order)


def _inputs(unit, seed):
    queries, visual, samples = demo_unit_inputs(
        unit, num_queries=(4, 2), num_slots=4, group_ids=GROUP_IDS, seed=seed
    )
    keys = torch.tensor([0, 0, 1, 1, 2, 2])  # the real queries' groups, flattened
    return queries, visual, samples, keys


def _decoder(unit):
    cfg = tiny_decoder_cfg(unit)
    cfg.pop('match_size', None)  # the default: matching at the targets' resolution here
    torch.manual_seed(0)
    return MODELS.build(cfg).eval()


def _random_outputs(unit, queries, gen):
    b, q = queries.mask.shape
    if unit == 'box':
        cxcy = torch.rand(b, q, 2, generator=gen) * 0.6 + 0.2
        wh = torch.rand(b, q, 2, generator=gen) * 0.3 + 0.05
        return dict(boxes=torch.cat([cxcy, wh], -1))
    if unit == 'mask':
        return dict(mask_logits=torch.randn(b, q, 32, 32, generator=gen) * 3)
    return dict(log_depth=torch.randn(b, q, 32, 32, generator=gen) * 0.5 + 0.5)


def _total(losses):
    return float(sum(losses.values()))


def _losses_by_assignment(decoder, args, keys):
    """The decoder's loss under each allowed assignment: its two-phase loss (``loss_costs``, then
    ``loss_assigned`` given the target order instead of the solver's)."""
    request = decoder.loss_costs(*args)
    return [_total(decoder.loss_assigned(request, order)) for order in _assignments(keys)]


@pytest.mark.parametrize('unit', ['box', 'mask', 'depth'])
@pytest.mark.parametrize('seed', range(10))
def test_matched_loss_is_the_minimum_over_group_assignments(unit, seed):
    decoder = _decoder(unit)
    queries, visual, samples, keys = _inputs(unit, seed)
    outputs = _random_outputs(unit, queries, torch.Generator().manual_seed(seed))
    with mock.patch.object(decoder, 'forward', return_value=outputs), torch.no_grad():
        matched = _total(decoder.loss(queries, visual, samples))
        every = _losses_by_assignment(decoder, (queries, visual, samples), keys)
    assert len(every) == 8 and max(every) - min(every) > 1e-3 * min(every)  # it matters
    assert matched == pytest.approx(min(every), rel=1e-5, abs=1e-6), (matched, sorted(every))


@pytest.mark.parametrize('seed', range(10))
def test_keypoint_box_matching_minimises_the_box_losses(seed):
    # With identical keypoints for every target (and predicted exactly), only the boxes tell the
    # assignments apart: the keypoint decoder's box costs must then pick the minimal box loss.
    decoder = _decoder('keypoint')
    queries, visual, samples, keys = _inputs('keypoint', seed)
    gen = torch.Generator().manual_seed(seed)
    kpts = samples[0].gt_units.keypoint.keypoints[:1].clone()
    kpts[..., 2] = 2
    for s in samples:
        gt = s.gt_units.keypoint
        gt.keypoints = kpts.expand(len(gt), -1, -1).clone()
    b, q = queries.mask.shape
    outputs = dict(
        _random_outputs('box', queries, gen),
        keypoints=kpts[None, :, :, :2].expand(b, q, -1, -1).clone(),
        visibility_logits=torch.full((b, q, kpts.shape[1]), 2.0),
    )
    with mock.patch.object(decoder, 'forward', return_value=outputs), torch.no_grad():
        matched = _total(decoder.loss(queries, visual, samples))
        every = _losses_by_assignment(decoder, (queries, visual, samples), keys)
    assert max(every) - min(every) > 1e-3 * min(every)  # the assignment matters
    assert matched == pytest.approx(min(every), rel=1e-5, abs=1e-6), (matched, sorted(every))
