# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""Grounded conversation generation (GLaMM protocol): AP50, mIoU, recall, caption CIDEr."""

from __future__ import annotations

import logging
from typing import Any, ClassVar

import numpy as np
from mmengine.logging import print_log

from mmrefvlm.registry import METRICS

from ..functional import (
    box_iou,
    build_coco_gt,
    greedy_paired_ious,
    mask_iou,
    run_coco_eval,
    strip_trp,
    to_numpy,
)
from ..text_encoders import build_text_encoder, text_similarity
from .base import RefVLMBaseMetric, TaskSpec, image_shape, mean_or_nan, ratio_or_nan, select_unit
from .caption_metric import TOKENIZERS, caption_references, score_captions
from .open_vocab_metric import coco_area, instance_geometry

UNIT_IOU = dict(box=('bboxes', box_iou, 'bbox'), mask=('masks', mask_iou, 'segm'))


def _image_miou(iou: np.ndarray) -> float:
    """Mean IoU of the GLaMM pairs of one image (0 when nothing pairs)."""
    pairs = greedy_paired_ious(iou)
    return float(np.mean(pairs)) if pairs else 0.0


@METRICS.register_module()
class GCGMetric(RefVLMBaseMetric):
    """GCG: grounded captions whose phrases carry boxes or masks.

    * ``AP50`` (percent): class-agnostic COCO AP at IoU 0.5 (pycocotools) of the predicted
      boxes/masks over the split, scored by ``pred_instances.scores`` (1.0 when absent; an
      entry with a non-finite score or geometry is a miss with score 0).
    * ``mIoU`` (percent): per image, the GLaMM pairing (take the highest IoU, remove its row and
      column, repeat while > 0), mean of the paired IoUs (0 when none); averaged over images
      with GT. Unpaired GT is not penalised here (GLaMM's convention): ``recall`` covers it.
    * ``recall`` (percent): GT objects matched one-to-one (greedy by IoU) by a prediction with
      IoU > ``iou_thr`` and phrase similarity > ``text_thr`` (cosine of ``text_encoder``
      embeddings), over all GT objects.
    * ``CIDEr`` (and ``METEOR`` with ``meteor=True``): caption scores of the plain caption text
      (TRP stripped) against ``gt_captions`` / the plain ``gt_text``.

    Args:
        tasks (Sequence[str]): Defaults to ``('gcg_box', 'gcg_mask')``.
        unit (str): ``'mask'`` (default) or ``'box'``.
        text_encoder (dict | object): Defaults to ``dict(type='MiniLMTextEncoder')``.
        iou_thr (float): Recall IoU threshold (strict). Defaults to 0.5.
        text_thr (float): Recall text-similarity threshold (strict). Defaults to 0.5.
        tokenizer (str): Caption tokenizer, ``'simple'`` or ``'ptb'``. Defaults to ``'simple'``.
        meteor (bool): Also compute METEOR. Defaults to False.
        **kwargs: ``prefix``, ``collect_device``, ``collect_dir``.
    """

    default_prefix: ClassVar[str] = 'gcg'
    default_tasks: ClassVar[tuple[str, ...]] = ('gcg_box', 'gcg_mask')

    def __init__(
        self,
        tasks: TaskSpec = None,
        *,
        unit: str = 'mask',
        text_encoder: dict | Any = None,
        iou_thr: float = 0.5,
        text_thr: float = 0.5,
        tokenizer: str = 'simple',
        meteor: bool = False,
        **kwargs,
    ) -> None:
        super().__init__(tasks, **kwargs)
        if unit not in UNIT_IOU:
            raise ValueError(f'GCGMetric evaluates units {sorted(UNIT_IOU)}, got {unit!r}')
        if tokenizer not in TOKENIZERS:
            raise ValueError(f'tokenizer must be one of {TOKENIZERS}, got {tokenizer!r}')
        self.unit = unit
        self.text_encoder = build_text_encoder(
            dict(type='MiniLMTextEncoder') if text_encoder is None else text_encoder
        )
        self.iou_thr, self.text_thr = iou_thr, text_thr
        self.tokenizer, self.meteor = tokenizer, meteor

    def process_sample(self, sample: dict) -> dict:  # noqa: D102
        field, iou_fn, iou_type = UNIT_IOU[self.unit]
        gt = select_unit(sample.get('gt_instances'), self.unit)
        pred = self.predictions(sample, self.unit, (field, 'scores'))
        if gt['num'] and pred['num']:
            iou = iou_fn(pred[field], gt[field])
        else:
            iou = np.zeros((pred['num'], gt['num']))
        scores = to_numpy(pred.get('scores', np.ones(pred['num'])), np.float64).reshape(-1)
        return dict(
            shape=image_shape(sample),
            iou=iou.astype(np.float32),
            gt_labels=list(gt.get('labels', [''] * gt['num'])),
            pred_labels=list(pred.get('labels', [''] * pred['num'])),
            gt_geom=instance_geometry(gt, iou_type),
            pred_geom=instance_geometry(pred, iou_type),
            scores=scores.tolist(),
            caption=strip_trp(self.prediction_text(sample)),
            refs=caption_references(sample),
        )

    def _ap50(self, results: list) -> float:
        iou_type = UNIT_IOU[self.unit][2]
        key = 'bbox' if iou_type == 'bbox' else 'segmentation'
        images, anns, dets = [], [], []
        for img_id, r in enumerate(results, start=1):
            images.append(dict(id=img_id, height=r['shape'][0], width=r['shape'][1]))
            anns += [
                {'image_id': img_id, 'category_id': 1, key: g, 'area': coco_area(g, iou_type)}
                for g in r['gt_geom']
            ]
            dets += [
                {'image_id': img_id, 'category_id': 1, key: g, 'score': s}
                for g, s in zip(r['pred_geom'], r['scores'], strict=True)
            ]
        coco_gt = build_coco_gt(images, anns, [dict(id=1, name='object')])
        stats, summary = run_coco_eval(coco_gt, dets, iou_type)
        print_log(
            f'{type(self).__name__} AP ({iou_type}):\n{summary}',
            logger='current',
            level=logging.INFO,
        )
        return float(stats[1]) * 100 if stats[1] >= 0 else float('nan')

    def _recall(self, results: list) -> tuple[float, float]:
        preds = sorted({p for r in results for p in r['pred_labels']})
        gts = sorted({g for r in results for g in r['gt_labels']})
        sim = text_similarity(self.text_encoder, preds, gts).numpy()
        p_idx = {p: i for i, p in enumerate(preds)}
        g_idx = {g: i for i, g in enumerate(gts)}
        hits = 0
        for r in results:
            iou = np.asarray(r['iou'], dtype=np.float64)
            if iou.size == 0:
                continue
            text = sim[
                np.ix_([p_idx[p] for p in r['pred_labels']], [g_idx[g] for g in r['gt_labels']])
            ]
            ok = (iou > self.iou_thr) & (text > self.text_thr)
            used_p, used_g = set(), set()
            for flat in np.argsort(-np.where(ok, iou, -1.0), axis=None, kind='stable'):
                p, g = divmod(int(flat), iou.shape[1])
                if not ok[p, g]:
                    break
                if p not in used_p and g not in used_g:
                    used_p.add(p)
                    used_g.add(g)
            hits += len(used_g)
        return hits, sum(len(r['gt_labels']) for r in results)

    def compute_from(self, results: list) -> dict[str, float]:  # noqa: D102
        if not results:
            return dict.fromkeys(('AP50', 'mIoU', 'recall', 'CIDEr'), float('nan'))
        with_gt = [r for r in results if len(r['gt_labels'])]
        miou = mean_or_nan(_image_miou(r['iou']) for r in with_gt)
        hits, num_gt = self._recall(results)
        out = {
            'AP50': self._ap50(results),
            'mIoU': miou * 100,
            'recall': ratio_or_nan(hits, num_gt) * 100,
        }
        out.update(
            score_captions(
                [r['caption'] for r in results],
                [r['refs'] for r in results],
                self.tokenizer,
                self.meteor,
            )
        )
        return out
