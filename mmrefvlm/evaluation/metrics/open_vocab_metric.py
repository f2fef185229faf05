# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""Freeform open-vocabulary detection / segmentation: "mAP similarity" (REF-VLM App. E)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, ClassVar

from mmengine.logging import print_log

from mmrefvlm.registry import METRICS

from ..functional import DET_STAT_NAMES, build_coco_gt, encode_mask, run_coco_eval, xyxy_to_xywh
from ..text_encoders import build_text_encoder, text_similarity
from .base import RefVLMBaseMetric, TaskSpec, image_shape, select_unit

IOU_TYPES = dict(bbox=('box', 'ovd'), segm=('mask', 'ovs'))


def instance_geometry(sel: dict, iou_type: str) -> list[Any]:
    """COCO geometry of each selected entry: xywh boxes (bbox) or RLE masks (segm)."""
    if iou_type == 'bbox':
        return [xyxy_to_xywh(b) for b in sel.get('bboxes', [])]
    return [encode_mask(m) for m in sel.get('masks', [])]


def coco_area(geom: Any, iou_type: str) -> float:
    """Area of a COCO bbox (xywh) or RLE."""
    if iou_type == 'bbox':
        return float(geom[2] * geom[3])
    from pycocotools import mask as mask_utils

    return float(mask_utils.area(geom))


@METRICS.register_module()
class OpenVocabMetric(RefVLMBaseMetric):
    """COCO mAP of freeform open-vocabulary predictions via text similarity.

    Each predicted phrase gets the class whose name embedding is the most cosine-similar to the
    phrase embedding (``text_encoder``); that similarity is the detection score. COCO AP is then
    computed by pycocotools ``COCOeval`` over **every** sample of the split (images without
    predictions keep their GT: their objects are misses; the authors' notebook dropped them).

    Class vocabulary: ``class_names``, else ``dataset_meta['classes']``, else the sorted set of
    GT labels seen in the split. GT labels must be in the vocabulary. A phrase whose best
    similarity is <= ``min_similarity`` (default 0: unrelated to every class) cannot be assigned
    and its detections are dropped (counted in the log); this can only lower AP.

    Keys (percent): ``mAP`` (IoU .50:.95), ``mAP_50``, ``mAP_75``, ``mAP_s``, ``mAP_m``,
    ``mAP_l``.

    Args:
        tasks (Sequence[str]): Defaults to ``('ovd',)`` for bbox, ``('ovs',)`` for segm.
        iou_type (str): ``'bbox'`` or ``'segm'``. Defaults to ``'bbox'``.
        unit (str, optional): Unit read. Defaults to ``'box'`` (bbox) / ``'mask'`` (segm).
        text_encoder (dict | object): Encoder config (``TASK_UTILS``) or instance. Defaults to
            ``dict(type='MiniLMTextEncoder')``.
        class_names (Sequence[str], optional): Class vocabulary.
        min_similarity (float): Phrases at or below this best similarity are unassigned.
            Defaults to 0.0.
        prefix (str, optional): Defaults to ``'ovd'`` (bbox) / ``'ovs'`` (segm).
        **kwargs: ``collect_device``, ``collect_dir``.
    """

    default_prefix: ClassVar[str] = 'ovd'

    def __init__(
        self,
        tasks: TaskSpec = None,
        *,
        iou_type: str = 'bbox',
        unit: str | None = None,
        text_encoder: dict | Any = None,
        class_names: Sequence[str] | None = None,
        min_similarity: float = 0.0,
        prefix: str | None = None,
        **kwargs,
    ) -> None:
        if iou_type not in IOU_TYPES:
            raise ValueError(f'iou_type must be one of {sorted(IOU_TYPES)}, got {iou_type!r}')
        default_unit, family = IOU_TYPES[iou_type]
        super().__init__((family,) if tasks is None else tasks, prefix=prefix or family, **kwargs)
        self.iou_type = iou_type
        self.unit = unit or default_unit
        self.text_encoder = build_text_encoder(
            dict(type='MiniLMTextEncoder') if text_encoder is None else text_encoder
        )
        self.class_names = None if class_names is None else [str(c) for c in class_names]
        self.min_similarity = min_similarity

    def process_sample(self, sample: dict) -> dict:  # noqa: D102
        gt = select_unit(sample.get('gt_instances'), self.unit)
        pred = self.predictions(
            sample, self.unit, ('bboxes',) if self.iou_type == 'bbox' else ('masks',)
        )
        return dict(
            shape=image_shape(sample),
            gt_labels=list(gt.get('labels', [])),
            gt_geom=instance_geometry(gt, self.iou_type),
            pred_labels=list(pred.get('labels', [''] * pred['num'])),
            pred_geom=instance_geometry(pred, self.iou_type),
        )

    def _vocabulary(self, results: list) -> list[str]:
        if self.class_names is not None:
            return self.class_names
        if self.dataset_meta and self.dataset_meta.get('classes'):
            return [str(c) for c in self.dataset_meta['classes']]
        return sorted({label for r in results for label in r['gt_labels']})

    def _assign(self, phrases: list[str], classes: list[str]) -> dict[str, tuple | None]:
        """Phrase -> (category id, similarity score), or None when unassignable."""
        if not classes:
            return dict.fromkeys(phrases)
        sim = text_similarity(self.text_encoder, phrases, classes).numpy()
        out: dict[str, tuple | None] = {}
        for i, phrase in enumerate(phrases):
            best = int(sim[i].argmax())
            score = float(sim[i, best])
            out[phrase] = (best + 1, score) if score > self.min_similarity else None
        return out

    def compute_from(self, results: list) -> dict[str, float]:  # noqa: D102
        classes = self._vocabulary(results)
        cat_of = {name: i + 1 for i, name in enumerate(classes)}
        assigned = self._assign(sorted({p for r in results for p in r['pred_labels']}), classes)
        images, anns, dets, dropped = [], [], [], 0
        key = 'bbox' if self.iou_type == 'bbox' else 'segmentation'
        for img_id, r in enumerate(results, start=1):
            images.append(dict(id=img_id, height=r['shape'][0], width=r['shape'][1]))
            for label, geom in zip(r['gt_labels'], r['gt_geom'], strict=True):
                if label not in cat_of:
                    raise ValueError(
                        f'GT label {label!r} is not in the class vocabulary ({len(classes)} names)'
                    )
                anns.append(
                    {
                        'image_id': img_id,
                        'category_id': cat_of[label],
                        key: geom,
                        'area': coco_area(geom, self.iou_type),
                    }
                )
            for phrase, geom in zip(r['pred_labels'], r['pred_geom'], strict=True):
                hit = assigned[phrase]
                if hit is None:
                    dropped += 1
                    continue
                cat, score = hit
                dets.append({'image_id': img_id, 'category_id': cat, key: geom, 'score': score})
        categories = [dict(id=i, name=n) for n, i in cat_of.items()]
        stats, summary = run_coco_eval(build_coco_gt(images, anns, categories), dets, self.iou_type)
        print_log(
            f'{type(self).__name__} ({self.iou_type}, {len(images)} images, {len(anns)} GT, '
            f'{len(dets)} detections, {dropped} unassigned):\n{summary}',
            logger='current',
            level=logging.INFO,
        )
        return {
            name: (float(v) * 100 if v >= 0 else float('nan'))
            for name, v in zip(DET_STAT_NAMES[:6], stats[:6], strict=True)
        }
