# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""BoxUnitDecoder: the decoder contract + hand-computed losses and rescaling."""

from unittest import mock

import pytest
import torch

import mmrefvlm.models.unit_decoders  # noqa: F401  (registers the decoders)
from mmrefvlm.testing import UnitDecoderContract, demo_unit_inputs, tiny_decoder_cfg


class TestBoxDecoderContract(UnitDecoderContract):
    unit = 'box'
    tiny_cfg = tiny_decoder_cfg('box')

    def expected_output_shapes(self, batch, slots):
        return dict(boxes=(batch, slots, 4))

    def expected_loss_keys(self):
        return {'loss_box_l1', 'loss_box_giou'}

    def check_prediction(self, pred, sample, rescale):
        h, w = sample.metainfo['ori_shape']
        limit = torch.tensor([w, h, w, h]) if rescale else torch.ones(4)
        assert pred.bboxes.shape == (len(pred), 4)
        assert (pred.bboxes >= 0).all() and (pred.bboxes <= limit).all()


class TestPointerBoxDecoderContract(TestBoxDecoderContract):
    """The same contract with the pointer head (queries point at cells that regress boxes)."""

    tiny_cfg = dict(tiny_decoder_cfg('box'), box_head='pointer')

    def build_decoder(self, seed=0):
        # At init the pointer attention is almost uniform, so every query predicts nearly the same
        # box and swapping targets across groups would barely change the loss; sharpen it.
        decoder = super().build_decoder(seed=seed)
        with torch.no_grad():
            decoder.predictor.head.box.query.weight.mul_(30)
        return decoder


def test_pointer_head_is_weighted_mean_of_cell_boxes():
    from mmrefvlm.models.unit_decoders.box import PointerBoxHead
    from mmrefvlm.models.unit_decoders.layers import FusedMemory

    torch.manual_seed(0)
    head = PointerBoxHead(8)
    mem = torch.randn(1, 4, 8)
    hidden = torch.randn(1, 2, 8)
    padding = torch.tensor([[False, False, False, True]])  # last cell is padding
    out = head(hidden, FusedMemory(mem, torch.zeros_like(mem), padding, (2, 2)))
    # reference: explicit loop over cells
    w = (head.query(hidden) @ head.key(mem).transpose(1, 2)) * head.scale
    w = w.masked_fill(padding[:, None], float('-inf')).softmax(-1)[0]
    d = head.ltrb(mem)[0].sigmoid()
    centres = torch.tensor([[0.25, 0.25], [0.75, 0.25], [0.25, 0.75], [0.75, 0.75]])
    cells = torch.cat([centres - d[:, :2], centres + d[:, 2:]], 1).clamp(0, 1)
    xyxy = w @ cells
    exp = torch.cat([(xyxy[:, :2] + xyxy[:, 2:]) / 2, xyxy[:, 2:] - xyxy[:, :2]], 1)
    assert torch.allclose(out[0], exp.clamp(1e-4, 1 - 1e-4), atol=1e-6)
    assert w[:, 3].eq(0).all()


def test_box_head_choice_validated():
    from mmrefvlm.registry import MODELS

    with pytest.raises(ValueError, match='box_head'):
        MODELS.build(dict(tiny_decoder_cfg('box'), box_head='conv'))


def _cxcywh(xyxy):
    x = torch.tensor(xyxy)
    return torch.cat([(x[..., :2] + x[..., 2:]) / 2, x[..., 2:] - x[..., :2]], -1)


def _build():
    from mmrefvlm.registry import MODELS

    torch.manual_seed(0)
    return MODELS.build(tiny_decoder_cfg('box'))


def test_loss_matches_hand_computed_l1_and_giou():
    decoder = _build()
    queries, visual, samples = demo_unit_inputs('box', num_queries=(3,), num_slots=4)
    pred = _cxcywh([[0.1, 0.1, 0.3, 0.3], [0.5, 0.5, 0.9, 0.7], [0.0, 0.0, 0.5, 0.5], [0, 0, 1, 1]])
    # Targets of group 0 ([0, 0, 1]) in swapped order: the matcher must pair q0-t1 and q1-t0.
    samples[0].gt_units.box.bboxes = torch.tensor(
        [[0.5, 0.5, 0.9, 0.8], [0.2, 0.2, 0.4, 0.4], [0.0, 0.0, 0.5, 0.5]]
    )
    with mock.patch.object(decoder, 'forward', return_value=dict(boxes=pred[None])):
        losses = decoder.loss(queries, visual, samples)
    # L1 on cxcywh: q0-t1 0.1 + 0.1, q1-t0 0.05 + 0.1, q2-t2 0 -> 0.35 / 3 queries x 5.
    assert losses['loss_box_l1'].item() == pytest.approx(0.35 / 3 * 5, rel=1e-5)
    # GIoU: q0-t1 inter .01 union .07 hull .09; q1-t0 inter .08 union .12 hull .12; q2 exact.
    giou0 = 0.01 / 0.07 - (0.09 - 0.07) / 0.09
    giou1 = 0.08 / 0.12
    expected = ((1 - giou0) + (1 - giou1) + 0.0) / 3 * 2
    assert losses['loss_box_giou'].item() == pytest.approx(expected, rel=1e-5)


def test_predict_rescales_to_original_pixels_and_clips():
    decoder = _build().eval()
    queries, visual, samples = demo_unit_inputs(
        'box', num_queries=(2,), num_slots=2, ori_shapes=[(24, 32)]
    )
    pred = torch.tensor([[[0.9, 0.5, 0.4, 0.2], [0.5, 0.9, 0.2, 0.2]]])  # cxcywh, S = 32
    with mock.patch.object(decoder, 'forward', return_value=dict(boxes=pred)):
        res = decoder.predict(queries, visual, samples)[0]
        raw = decoder.predict(queries, visual, samples, rescale=False)[0]
    expected = torch.tensor([[22.4, 12.8, 32.0, 19.2], [12.8, 24.0, 19.2, 24.0]])
    torch.testing.assert_close(res.bboxes, expected)
    torch.testing.assert_close(
        raw.bboxes, torch.tensor([[0.7, 0.4, 1.0, 0.6], [0.4, 0.8, 0.6, 1.0]])
    )
    torch.testing.assert_close(res.scores, torch.ones(2))


def test_rejects_more_queries_than_slots():
    decoder = _build()
    queries, visual, _ = demo_unit_inputs('box', num_queries=(5,))  # tiny num_queries is 4
    with pytest.raises(ValueError, match='num_queries'):
        decoder(queries, visual)


def test_bad_in_channels_raise():
    decoder = _build()
    queries, visual, _ = demo_unit_inputs('box', in_channels=16)
    with pytest.raises(ValueError, match='embeds'):
        decoder(queries, visual)


def test_memory_padding_cells_do_not_change_boxes():
    # Features far inside the square-frame padding are masked out of cross-attention.
    decoder = _build().eval()
    queries, visual, _ = demo_unit_inputs('box', num_queries=(2,), ori_shapes=[(16, 32)])
    out = decoder(queries, visual)['boxes']
    pyramid = tuple(p.clone() for p in visual.pyramid)
    clip = visual.clip.clone()
    for p in pyramid:  # rows >= 3/4 of the frame: only padding cells pool them
        p[:, :, p.shape[-2] * 3 // 4 :] += 100.0
    clip[:, :, 3:] += 100.0
    changed = type(visual)(pyramid=pyramid, clip=clip, valid_hw=visual.valid_hw)
    torch.testing.assert_close(decoder(queries, changed)['boxes'], out)
