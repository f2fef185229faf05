# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""MaskUnitDecoder: the decoder contract + valid-pixel losses against a brute-force reference."""

from unittest import mock

import pytest
import torch

import mmrefvlm.models.unit_decoders  # noqa: F401  (registers the decoders)
from mmrefvlm.models.unit_decoders.layers import valid_region_mask
from mmrefvlm.registry import MODELS
from mmrefvlm.testing import UnitDecoderContract, demo_unit_inputs, tiny_decoder_cfg


class TestMaskDecoderContract(UnitDecoderContract):
    unit = 'mask'
    tiny_cfg = tiny_decoder_cfg('mask')

    def expected_output_shapes(self, batch, slots):
        return dict(mask_logits=(batch, slots, 16, 16))

    def expected_loss_keys(self):
        return {'loss_mask_focal', 'loss_mask_dice'}

    def check_prediction(self, pred, sample, rescale):
        h, w = sample.metainfo['ori_shape']
        assert pred.masks.dtype == torch.bool
        assert pred.masks.shape == ((len(pred), h, w) if rescale else (len(pred), 16, 16))
        assert ((pred.scores >= 0) & (pred.scores <= 1)).all()


def _build():
    torch.manual_seed(0)
    return MODELS.build(tiny_decoder_cfg('mask'))


def _reference(logits, targets, valid, alpha=0.25, gamma=2.0):
    """Per-pixel loop-free but independent focal / dice on valid pixels (float64)."""
    focal_sum, dice_sum = 0.0, 0.0
    for lg, t, v in zip(logits.double(), targets.double(), valid, strict=True):
        p = lg.sigmoid()[v]
        t = t[v]
        fl = -(
            alpha * t * (1 - p) ** gamma * torch.log(p)
            + (1 - alpha) * (1 - t) * p**gamma * torch.log(1 - p)
        )
        focal_sum += fl.mean().item()
        dice_sum += 1 - (2 * (p * t).sum().item() + 1) / (p.sum().item() + t.sum().item() + 1)
    return focal_sum, dice_sum


def test_loss_matches_reference_on_valid_pixels_after_matching():
    decoder = _build()
    queries, visual, samples = demo_unit_inputs(
        'mask', num_queries=(3, 1), num_slots=3, ori_shapes=[(20, 32), (32, 24)]
    )
    targets = [s.gt_units.mask.masks for s in samples]
    # Predictions close to the targets, with the two targets of group 0 swapped -> the matcher
    # must pair prediction 0 with target 1 and prediction 1 with target 0.
    gen = torch.Generator().manual_seed(1)
    logits = torch.randn(2, 3, 32, 32, generator=gen)
    order = [[1, 0, 2], [0]]
    for b, perm in enumerate(order):
        for q, t in enumerate(perm):
            logits[b, q] += 3 * (2 * targets[b][t].float() - 1)
    with mock.patch.object(decoder, 'forward', return_value=dict(mask_logits=logits)):
        losses = decoder.loss(queries, visual, samples)
    preds = torch.stack([logits[0, 0], logits[0, 1], logits[0, 2], logits[1, 0]])
    tgts = torch.stack([targets[0][1], targets[0][0], targets[0][2], targets[1][0]])
    valid = torch.cat(
        [
            valid_region_mask(visual.valid_hw[:1], 32, 32).expand(3, -1, -1),
            valid_region_mask(visual.valid_hw[1:], 32, 32),
        ]
    )
    focal, dice = _reference(preds, tgts, valid)
    assert losses['loss_mask_focal'].item() == pytest.approx(20 * focal / 4, rel=1e-4)
    assert losses['loss_mask_dice'].item() == pytest.approx(dice / 4, rel=1e-4)


def test_loss_ignores_logits_in_the_padding():
    decoder = _build()
    queries, visual, samples = demo_unit_inputs(
        'mask', num_queries=(2, 1), ori_shapes=[(16, 32), (32, 20)]
    )
    logits = torch.randn(2, 3, 32, 32)
    padding = ~valid_region_mask(visual.valid_hw, 32, 32)[:, None].expand_as(logits)
    assert padding.any()

    def loss_of(lg):
        with mock.patch.object(decoder, 'forward', return_value=dict(mask_logits=lg)):
            return decoder.loss(queries, visual, samples)

    base = loss_of(logits)
    changed = loss_of(torch.where(padding, torch.randn_like(logits) * 20, logits))
    for key in base:
        torch.testing.assert_close(changed[key], base[key])
    inside = loss_of(torch.where(padding, logits, logits + 5.0))
    assert not torch.allclose(inside['loss_mask_focal'], base['loss_mask_focal'])


def test_targets_are_binarised():
    decoder = _build()
    queries, visual, samples = demo_unit_inputs('mask', num_queries=(2, 1))
    logits = torch.randn(2, 3, 32, 32)
    soft = [s.clone() for s in samples]
    for s in soft:  # bicubic-resize-like soft values on both sides of 0.5
        m = s.gt_units.mask.masks
        s.gt_units.mask.masks = torch.where(m, torch.tensor(0.8), torch.tensor(0.3))
    with mock.patch.object(decoder, 'forward', return_value=dict(mask_logits=logits)):
        hard = decoder.loss(queries, visual, samples)
        binarised = decoder.loss(queries, visual, soft)
    for key in hard:
        torch.testing.assert_close(binarised[key], hard[key])


def test_predict_crops_the_image_and_resizes_to_original():
    decoder = _build().eval()
    queries, visual, samples = demo_unit_inputs(
        'mask', num_queries=(1,), num_slots=1, ori_shapes=[(24, 32)]
    )
    logits = torch.full((1, 1, 16, 16), -10.0)
    logits[..., :8, :] = 10.0  # the top half of the square frame (32 px: rows < 16)
    with mock.patch.object(decoder, 'forward', return_value=dict(mask_logits=logits)):
        pred = decoder.predict(queries, visual, samples)[0]
        raw = decoder.predict(queries, visual, samples, rescale=False)[0]
    expected = torch.zeros(1, 24, 32, dtype=torch.bool)
    expected[:, :16] = True
    assert torch.equal(pred.masks, expected)
    assert pred.scores.item() > 0.95
    assert torch.equal(raw.masks, logits[0] > 0)


def test_dice_loss_must_not_activate():
    cfg = tiny_decoder_cfg('mask')
    cfg['loss_dice'] = dict(type='mmdet.DiceLoss', activate=True)
    with pytest.raises(ValueError, match='activate'):
        MODELS.build(cfg)
