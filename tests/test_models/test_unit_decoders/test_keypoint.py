# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""KeypointUnitDecoder: the decoder contract, a real OKS (pycocotools), box-decoder init."""

import contextlib
import io
from unittest import mock

import numpy as np
import pytest
import torch

import mmrefvlm.models.unit_decoders  # noqa: F401  (registers the decoders)
from mmrefvlm.models.unit_decoders import keypoint_oks
from mmrefvlm.registry import MODELS
from mmrefvlm.testing import UnitDecoderContract, demo_unit_inputs, tiny_decoder_cfg

K = 5


class TestKeypointDecoderContract(UnitDecoderContract):
    unit = 'keypoint'
    tiny_cfg = tiny_decoder_cfg('keypoint')
    input_kwargs = dict(num_keypoints=K)

    def expected_output_shapes(self, batch, slots):
        return dict(
            boxes=(batch, slots, 4),
            keypoints=(batch, slots, K, 2),
            visibility_logits=(batch, slots, K),
        )

    def expected_loss_keys(self):
        return {
            'loss_keypoint_bbox_l1',
            'loss_keypoint_bbox_giou',
            'loss_keypoint_l1',
            'loss_keypoint_oks',
            'loss_keypoint_vis',
        }

    def check_prediction(self, pred, sample, rescale):
        h, w = sample.metainfo['ori_shape']
        limit = torch.tensor([w, h]) if rescale else torch.ones(2)
        kpts = pred.keypoints
        assert kpts.shape == (len(pred), K, 3)
        assert (kpts[..., :2] >= 0).all() and (kpts[..., :2] <= limit).all()
        assert ((kpts[..., 2] >= 0) & (kpts[..., 2] <= 1)).all()
        assert pred.bboxes.shape == (len(pred), 4)
        assert (pred.bboxes >= 0).all() and (pred.bboxes <= limit.repeat(2)).all()


def _build(cfg=None, seed=0):
    torch.manual_seed(seed)
    return MODELS.build(cfg or tiny_decoder_cfg('keypoint'))


def test_oks_matches_pycocotools():
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    gen = torch.Generator().manual_seed(0)
    sigmas = torch.tensor([0.05, 0.08, 0.03, 0.1, 0.06], dtype=torch.float64)
    gt_xy = torch.rand(3, K, 2, generator=gen, dtype=torch.float64) * 100
    vis = torch.tensor([[2, 1, 0, 2, 2], [1, 1, 1, 1, 1], [0, 2, 0, 0, 1]])
    pred_xy = gt_xy + torch.randn(3, K, 2, generator=gen, dtype=torch.float64) * 4
    areas = torch.tensor([900.0, 2500.0, 400.0], dtype=torch.float64)
    ours = keypoint_oks(pred_xy, gt_xy, vis > 0, areas, sigmas)

    def kp(xy, v):
        return torch.cat([xy, v[:, None].double()], 1).flatten().tolist()

    anns = [
        dict(
            id=i + 1,
            image_id=1,
            category_id=1,
            iscrowd=0,
            area=float(areas[i]),
            bbox=[0, 0, 10, 10],
            num_keypoints=int((vis[i] > 0).sum()),
            keypoints=kp(gt_xy[i], vis[i]),
        )
        for i in range(3)
    ]
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO()
        coco.dataset = dict(
            images=[dict(id=1, width=100, height=100)],
            annotations=anns,
            categories=[dict(id=1, name='thing')],
        )
        coco.createIndex()
        dets = coco.loadRes(
            [
                dict(
                    image_id=1,
                    category_id=1,
                    score=1.0 - 0.1 * i,
                    keypoints=kp(pred_xy[i], torch.ones(K)),
                )
                for i in range(3)
            ]
        )
        ev = COCOeval(coco, dets, 'keypoints')
        ev.params.kpt_oks_sigmas = sigmas.numpy()
        ev._prepare()
        ious = ev.computeOks(1, 1)  # (dets sorted by score, gts)
    np.testing.assert_allclose(ours.numpy(), np.diag(ious), rtol=1e-10)


def test_oks_of_a_perfect_prediction_is_one():
    xy = torch.rand(4, K, 2)
    lab = torch.rand(4, K) > 0.3
    lab[:, 0] = True
    oks = keypoint_oks(xy, xy, lab, torch.rand(4) + 0.1, torch.full((K,), 0.05))
    torch.testing.assert_close(oks, torch.ones(4))


def _perfect_outputs(samples, slots):
    gt = samples[0].gt_units.keypoint
    boxes = gt.bboxes
    cxcywh = torch.cat([(boxes[:, :2] + boxes[:, 2:]) / 2, boxes[:, 2:] - boxes[:, :2]], -1)
    n = len(gt)
    out = dict(
        boxes=torch.full((1, slots, 4), 0.5),
        keypoints=torch.full((1, slots, K, 2), 0.5),
        visibility_logits=torch.zeros(1, slots, K),
    )
    out['boxes'][0, :n] = cxcywh
    out['keypoints'][0, :n] = gt.keypoints[..., :2]
    out['visibility_logits'][0, :n] = torch.where(gt.keypoints[..., 2] > 0, 30.0, -30.0)
    return out


def test_perfect_prediction_has_zero_losses_and_unlabelled_points_are_ignored():
    decoder = _build()
    queries, visual, samples = demo_unit_inputs('keypoint', num_queries=(3,), num_keypoints=K)
    out = _perfect_outputs(samples, queries.mask.shape[1])
    with mock.patch.object(decoder, 'forward', return_value=out):
        losses = decoder.loss(queries, visual, samples)
    for key, val in losses.items():
        assert val.item() == pytest.approx(0.0, abs=1e-5), key
    # Moving unlabelled (v = 0) keypoints anywhere changes nothing.
    unlabelled = samples[0].gt_units.keypoint.keypoints[..., 2] == 0
    assert unlabelled.any()
    moved = {k: v.clone() for k, v in out.items()}
    moved['keypoints'][0, :3][unlabelled] = torch.tensor([0.9, 0.1])
    with mock.patch.object(decoder, 'forward', return_value=moved):
        again = decoder.loss(queries, visual, samples)
    for key in losses:
        torch.testing.assert_close(again[key], losses[key])


def test_keypoint_l1_and_visibility_loss_by_hand():
    decoder = _build()
    queries, visual, samples = demo_unit_inputs(
        'keypoint', num_queries=(1,), num_slots=1, num_keypoints=K
    )
    out = _perfect_outputs(samples, 1)
    gt = samples[0].gt_units.keypoint.keypoints[0]
    labelled = gt[:, 2] > 0
    out['keypoints'][0, 0, 0] += torch.tensor([0.01, -0.02])  # keypoint 0 is always labelled
    out['visibility_logits'][0, 0] = torch.linspace(-1, 1, K)
    with mock.patch.object(decoder, 'forward', return_value=out):
        losses = decoder.loss(queries, visual, samples)
    assert losses['loss_keypoint_l1'].item() == pytest.approx(2 * 0.03, rel=1e-4)
    logits, target = torch.linspace(-1, 1, K), labelled.float()
    bce = -(
        target * torch.log(torch.sigmoid(logits))
        + (1 - target) * torch.log(1 - torch.sigmoid(logits))
    ).mean()
    assert losses['loss_keypoint_vis'].item() == pytest.approx(bce.item(), rel=1e-5)
    box = samples[0].gt_units.keypoint.bboxes[0]
    area = ((box[2] - box[0]) * (box[3] - box[1])).item()
    # Only keypoint 0 is off (by (0.01, -0.02)); the other labelled ones have similarity 1.
    sim0 = float(np.exp(-(0.01**2 + 0.02**2) / (2 * area * (2 * 0.05) ** 2)))
    oks = (sim0 + int(labelled.sum()) - 1) / int(labelled.sum())
    assert losses['loss_keypoint_oks'].item() == pytest.approx(2 * (1 - oks), rel=1e-4)


def test_init_from_box_decoder_reproduces_its_boxes():
    box_cfg = tiny_decoder_cfg('box')
    box = _build(box_cfg, seed=1).eval()
    kpt = _build(seed=2).eval()
    queries, visual, _ = demo_unit_inputs('keypoint', num_queries=(3, 2), num_keypoints=K)
    before = kpt(queries, visual)['boxes']
    report = kpt.init_from_box_decoder(box)
    assert not report['skipped'] and not report['missing']
    assert any(k.startswith('predictor.head.point_decoder.') for k in report['loaded'])
    expected = box(queries, visual)['boxes']
    assert not torch.allclose(before, expected)
    torch.testing.assert_close(kpt(queries, visual)['boxes'], expected)
    # From a RefVLM-style state dict with fewer slots: the slot embedding is skipped, rest loads.
    small = _build({**box_cfg, 'num_queries': 2}, seed=3)
    report = _build(seed=4).init_from_box_decoder(small.state_dict())
    assert report['skipped'] == ['predictor.query_proj.slot_embed.weight']
    assert report['missing'] == ['predictor.query_proj.slot_embed.weight']


def test_predict_rescales_keypoints():
    decoder = _build().eval()
    queries, visual, samples = demo_unit_inputs(
        'keypoint', num_queries=(1,), num_slots=1, ori_shapes=[(24, 32)], num_keypoints=K
    )
    out = dict(
        boxes=torch.tensor([[[0.5, 0.5, 0.2, 0.2]]]),
        keypoints=torch.tensor([[[[0.5, 0.25], [0.9, 0.9], [0.0, 0.0], [1.0, 0.7], [0.1, 0.1]]]]),
        visibility_logits=torch.zeros(1, 1, K),
    )
    with mock.patch.object(decoder, 'forward', return_value=out):
        pred = decoder.predict(queries, visual, samples)[0]
    expected = torch.tensor([[16.0, 8.0], [28.8, 24.0], [0.0, 0.0], [32.0, 22.4], [3.2, 3.2]])
    torch.testing.assert_close(pred.keypoints[0, :, :2], expected)
    torch.testing.assert_close(pred.keypoints[0, :, 2], torch.full((K,), 0.5))
    torch.testing.assert_close(pred.bboxes, torch.tensor([[12.8, 12.8, 19.2, 19.2]]))
    torch.testing.assert_close(pred.scores, torch.tensor([0.5]))


def test_sigmas_validation():
    cfg = tiny_decoder_cfg('keypoint')
    cfg['sigmas'] = None
    with pytest.raises(ValueError, match='sigmas'):
        MODELS.build(cfg)
    cfg['sigmas'] = [0.1] * 4
    with pytest.raises(ValueError, match='sigmas'):
        MODELS.build(cfg)
