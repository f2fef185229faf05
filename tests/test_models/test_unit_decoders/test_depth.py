# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""DepthUnitDecoder: the decoder contract + SILog properties and valid-pixel handling."""

import math
from unittest import mock

import pytest
import torch

import mmrefvlm.models.unit_decoders  # noqa: F401  (registers the decoders)
from mmrefvlm.models.unit_decoders import silog
from mmrefvlm.models.unit_decoders.depth import pairwise_silog
from mmrefvlm.models.unit_decoders.layers import valid_region_mask
from mmrefvlm.registry import MODELS
from mmrefvlm.testing import UnitDecoderContract, demo_unit_inputs, tiny_decoder_cfg


class TestDepthDecoderContract(UnitDecoderContract):
    unit = 'depth'
    tiny_cfg = tiny_decoder_cfg('depth')

    def expected_output_shapes(self, batch, slots):
        return dict(log_depth=(batch, slots, 16, 16))

    def expected_loss_keys(self):
        return {'loss_depth_silog'}

    def check_prediction(self, pred, sample, rescale):
        h, w = sample.metainfo['ori_shape']
        assert pred.depth.shape == ((len(pred), h, w) if rescale else (len(pred), 16, 16))
        assert pred.depth.dtype == torch.float32 and (pred.depth > 0).all()


def _build():
    torch.manual_seed(0)
    return MODELS.build(tiny_decoder_cfg('depth'))


def test_silog_by_hand_and_scale_invariance():
    d = torch.tensor([[0.1, -0.1, 0.3, 5.0]])
    valid = torch.tensor([[True, True, True, False]])
    gt = torch.zeros(1, 4)
    # mean(d^2) = 0.11 / 3, mean(d) = 0.1 over the 3 valid pixels; the invalid 5.0 is ignored.
    assert silog(d, gt, valid).item() == pytest.approx(0.11 / 3 - 0.85 * 0.01, rel=1e-5)
    pred, target = torch.randn(3, 50), torch.randn(3, 50)
    valid = torch.rand(3, 50) > 0.3
    shifted = pred + math.log(7.3)  # depth x 7.3
    torch.testing.assert_close(
        silog(shifted, target, valid, lam=1.0),
        silog(pred, target, valid, lam=1.0),
        atol=1e-5,
        rtol=1e-5,
    )
    assert not torch.allclose(silog(shifted, target, valid), silog(pred, target, valid))
    assert silog(pred, target, torch.zeros_like(valid)).eq(0).all()


def test_pairwise_silog_matches_brute_force():
    pred, target = torch.randn(2, 3, 40), torch.randn(2, 4, 40)
    valid = torch.rand(2, 4, 40) > 0.4
    got = pairwise_silog(pred, target, valid, lam=0.85)
    for g in range(2):
        for i in range(3):
            for j in range(4):
                ref = silog(pred[g, i : i + 1], target[g, j : j + 1], valid[g, j : j + 1])
                torch.testing.assert_close(got[g, i, j], ref[0], atol=1e-5, rtol=1e-4)


def test_loss_matches_reference_and_ignores_invalid_pixels():
    decoder = _build()
    queries, visual, samples = demo_unit_inputs(
        'depth', num_queries=(1, 1), num_slots=1, ori_shapes=[(16, 32), (32, 20)]
    )
    log_depth = torch.randn(2, 1, 32, 32) * 0.2

    def loss_of(ld):
        with mock.patch.object(decoder, 'forward', return_value=dict(log_depth=ld)):
            return decoder.loss(queries, visual, samples)['loss_depth_silog']

    base = loss_of(log_depth)
    ref = 0.0
    for b, s in enumerate(samples):
        gt = s.gt_units.depth
        valid = (
            gt.valid[0]
            & (gt.depth[0] > 0)
            & valid_region_mask(visual.valid_hw[b : b + 1], 32, 32)[0]
        )
        d = (log_depth[b, 0] - gt.depth[0].clamp(min=1e-6).log())[valid]
        ref += (d.pow(2).mean() - 0.85 * d.mean().pow(2)).item()
    assert base.item() == pytest.approx(ref / 2, rel=1e-4)
    invalid = torch.stack([~(s.gt_units.depth.valid[0]) for s in samples])[:, None]
    padding = ~valid_region_mask(visual.valid_hw, 32, 32)[:, None]
    assert padding.any() and invalid.any()
    noisy = torch.where(invalid | padding, torch.randn_like(log_depth) * 10, log_depth)
    torch.testing.assert_close(loss_of(noisy), base)


def test_predict_depth_in_original_pixels():
    decoder = _build().eval()
    queries, visual, samples = demo_unit_inputs(
        'depth', num_queries=(2,), num_slots=2, ori_shapes=[(24, 32)]
    )
    log_depth = torch.full((1, 2, 16, 16), math.log(2.0))
    log_depth[0, 1, :, 8:] = math.log(4.0)  # right half of the square frame
    with mock.patch.object(decoder, 'forward', return_value=dict(log_depth=log_depth)):
        pred = decoder.predict(queries, visual, samples)[0]
    assert pred.depth.shape == (2, 24, 32)
    torch.testing.assert_close(pred.depth[0], torch.full((24, 32), 2.0))
    torch.testing.assert_close(pred.depth[1, :, :15], torch.full((24, 15), 2.0))
    torch.testing.assert_close(pred.depth[1, :, 17:], torch.full((24, 15), 4.0))
    torch.testing.assert_close(pred.scores, torch.ones(2))


def test_output_bias_starts_at_init_depth():
    cfg = tiny_decoder_cfg('depth')
    cfg['init_depth'] = 3.0
    decoder = MODELS.build(cfg)
    decoder.init_weights()
    assert decoder.head[-1].bias.item() == pytest.approx(math.log(3.0))


def test_predict_clamps_to_depth_range():
    # The contract only sees an untrained decoder's outputs, which never reach the clamp.
    decoder = _build().eval()
    queries, visual, samples = demo_unit_inputs(
        'depth', num_queries=(1,), num_slots=1, ori_shapes=[(16, 16)]
    )
    log_depth = torch.zeros(1, 1, 16, 16)
    log_depth[..., :8] = 100.0  # exp overflows float32 without the clamp
    log_depth[..., 8:] = -200.0  # exp underflows to 0
    with mock.patch.object(decoder, 'forward', return_value=dict(log_depth=log_depth)):
        depth = decoder.predict(queries, visual, samples)[0].depth[0]
    low, high = decoder.depth_range
    torch.testing.assert_close(depth[:, :7], torch.full((16, 7), high))
    torch.testing.assert_close(depth[:, 9:], torch.full((16, 7), low))
    assert torch.isfinite(depth).all() and (depth > 0).all()
