# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""PointUnitDecoder: the core decoder contract + hand-computed head, losses and rescaling."""

import torch

from mmrefvlm.models.unit_decoders.layers import FusedMemory
from mmrefvlm.registry import MODELS
from mmrefvlm.testing import (
    DEMO_CLIP_CHANNELS,
    DEMO_IN_CHANNELS,
    DEMO_PYRAMID_CHANNELS,
    UnitDecoderContract,
    demo_unit_inputs,
)
from projects.example_unit.point_unit import PointerPointHead, PointUnitDecoder
from projects.example_unit.point_unit.decoder import nearest_cell

TINY_CFG = dict(
    type='PointUnitDecoder',
    in_channels=DEMO_IN_CHANNELS,
    num_queries=4,
    d_model=32,
    pyramid_channels=DEMO_PYRAMID_CHANNELS,
    clip_channels=DEMO_CLIP_CHANNELS,
    memory=dict(levels=(0, 1), size=8),
    decoder=dict(num_layers=1, num_heads=4, ffn_dim=64, dropout=0.1),
)


def point_targets(frame):
    """The ``point`` unit's synthetic targets (declared for the contract suite): one random point
    inside each of the frame's random boxes, (N, 2) normalised ``(x, y)``."""
    boxes = frame.boxes
    return dict(points=boxes[:, :2] + frame.uniform(frame.num, 2) * (boxes[:, 2:] - boxes[:, :2]))


def point_inputs(**kwargs):
    """Demo inputs with ``gt_units.point`` (the declared-targets path of ``demo_unit_inputs``)."""
    return demo_unit_inputs('point', targets=point_targets, **kwargs)


class TestPointDecoderContract(UnitDecoderContract):
    unit = 'point'
    tiny_cfg = TINY_CFG
    synthetic_targets = staticmethod(point_targets)  # the suite builds gt_units.point itself

    def build_decoder(self, seed=0):
        # At init the pointer attention is nearly uniform, so every query predicts about the same
        # point and swapping targets across groups would barely change the loss; sharpen it.
        decoder = super().build_decoder(seed=seed)
        with torch.no_grad():
            decoder.predictor.head.query.weight.mul_(30)
        return decoder

    def expected_output_shapes(self, batch, slots):
        return dict(points=(batch, slots, 2), logits=(batch, slots, 64))

    def expected_loss_keys(self):
        return {'loss_point_l1', 'loss_point_ce'}

    def check_prediction(self, pred, sample, rescale):
        h, w = sample.metainfo['ori_shape']
        limit = torch.tensor([w, h], dtype=torch.float32) if rescale else torch.ones(2)
        assert pred.points.shape == (len(pred), 2) and pred.points.dtype == torch.float32
        assert (pred.points >= 0).all() and (pred.points <= limit).all()
        assert ((pred.scores > 0) & (pred.scores <= 1)).all()


def test_head_is_weighted_mean_of_cell_candidates():
    torch.manual_seed(0)
    head = PointerPointHead(8, offset_range=0.1)
    mem, hidden = torch.randn(1, 4, 8), torch.randn(1, 2, 8)
    padding = torch.tensor([[False, False, False, True]])
    out = head(hidden, FusedMemory(mem, torch.zeros_like(mem), padding, (2, 2)))
    points, logits = out['points'], out['logits']
    # reference: explicit loop over queries and cells
    centres = [(0.25, 0.25), (0.75, 0.25), (0.25, 0.75), (0.75, 0.75)]
    for q in range(2):
        scores = [float(head.query(hidden[0, q]) @ head.key(mem[0, n])) * 8**-0.5 for n in range(3)]
        weights = torch.tensor(scores).softmax(0)
        exp = torch.zeros(2)
        for n in range(3):
            off = head.offset(mem[0, n]).tanh() * 0.1
            exp += weights[n] * (torch.tensor(centres[n]) + off)
        torch.testing.assert_close(points[0, q], exp.clamp(0, 1), atol=1e-5, rtol=1e-5)
        assert logits[0, q, 3] == -1e4


def test_nearest_cell_is_the_cell_holding_the_point_unless_padding():
    pts = torch.tensor([[0.1, 0.1], [0.9, 0.3], [0.49, 0.51], [0.9, 0.9]])
    assert nearest_cell(pts, (2, 2)).tolist() == [0, 1, 2, 3]
    padding = torch.tensor([[False, True, False, True]]).expand(4, -1)  # right column is padding
    assert nearest_cell(pts, (2, 2), padding).tolist() == [0, 0, 2, 2]


def test_losses_match_hand_computation():
    torch.manual_seed(0)
    decoder = MODELS.build(dict(TINY_CFG, dropout=0.0)).eval()
    queries, visual, samples = point_inputs(num_queries=(1, 1), group_ids=[[0], [0]])
    out = decoder(queries, visual)
    losses = decoder.loss(queries, visual, samples)
    pred = out['points'][queries.mask]
    tgt = torch.cat([s.gt_units.point.points for s in samples])
    l1 = 5.0 * (pred - tgt).abs().sum() / 2
    # target cells on the 8 x 8 memory grid (targets lie inside the image part, not padding)
    cells = [int(min(int(y * 8), 7) * 8 + min(int(x * 8), 7)) for x, y in tgt.tolist()]
    logits = out['logits'][queries.mask]
    ce = -torch.stack([logits[i].log_softmax(-1)[c] for i, c in enumerate(cells)]).mean()
    torch.testing.assert_close(losses['loss_point_l1'], l1)
    torch.testing.assert_close(losses['loss_point_ce'], ce)


def test_predict_rescales_to_original_pixels():
    torch.manual_seed(0)
    decoder = MODELS.build(TINY_CFG).eval()
    queries, visual, samples = point_inputs()
    norm = decoder.predict(queries, visual, samples, rescale=False)
    pix = decoder.predict(queries, visual, samples, rescale=True)
    for a, b, s in zip(norm, pix, samples, strict=True):
        h, w = s.metainfo['ori_shape']
        side = s.metainfo['square_size']
        exp = torch.minimum(a.points * side, torch.tensor([float(w), float(h)]))
        torch.testing.assert_close(b.points, exp)


def test_decoder_learns_a_fixed_point_quickly():
    """A handful of steps move the prediction onto a target cell (the unit can learn)."""
    torch.manual_seed(0)
    decoder = MODELS.build(dict(TINY_CFG, dropout=0.0))
    queries, visual, samples = point_inputs(num_queries=(1, 1), group_ids=[[0], [0]])
    opt = torch.optim.Adam(decoder.parameters(), lr=1e-2)
    first = None
    for _ in range(40):
        loss = sum(decoder.loss(queries, visual, samples).values())
        first = float(loss) if first is None else first
        opt.zero_grad()
        loss.backward()
        opt.step()
    pred = decoder.eval()(queries, visual)['points'][queries.mask]
    tgt = torch.cat([s.gt_units.point.points for s in samples])
    assert float(loss) < 0.25 * first
    assert (pred - tgt).abs().max() < 0.05


def test_is_a_registered_base_decoder():
    assert MODELS.get('PointUnitDecoder') is PointUnitDecoder
    assert PointUnitDecoder.unit == 'point'
