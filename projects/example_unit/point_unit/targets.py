# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""``PointTarget``: the ``point`` unit's targets, one (x, y) per ``<REF>``.

Registered in ``TASK_UTILS`` and named per unit in the pipeline config, so the core data pipeline
builds ``gt_units.point`` without knowing the unit:
``BuildUnitTargets(unit_targets=dict(point=dict(type=PointTarget)))``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from mmrefvlm.datasets.geometry import decode_mask
from mmrefvlm.datasets.transforms import BaseUnitTarget, TargetError
from mmrefvlm.registry import TASK_UTILS

POINT_SOURCES = ('keypoint', 'mask_centroid', 'box_center')


@TASK_UTILS.register_module()
class PointTarget(BaseUnitTarget):
    """Point targets from a record instance.

    ``build`` gives ``points`` (N, 2) float, ``(x, y)`` normalised by the square-frame side S
    (the image sits at the top-left, so ``x * S`` is the pixel x of the original image).
    ``build_original`` gives ``points`` (N, 2) float in original pixels and, with ``with_masks``,
    the instances' ``masks`` (N, H, W) bool, which :class:`PointMetric` uses for its hit test.

    Args:
        source (str): Where the point comes from: ``'keypoint'`` (keypoint ``keypoint_index`` of
            the instance; it must be labelled, v > 0), ``'mask_centroid'`` (mean of the mask's
            pixel centres) or ``'box_center'``. Defaults to ``'keypoint'`` (the shape centre in
            the demo data).
        keypoint_index (int): Keypoint used with ``source='keypoint'``. Defaults to 0.
        with_masks (bool): Also return the instance masks from ``build_original``. Defaults to
            True.
    """

    def __init__(
        self, source: str = 'keypoint', keypoint_index: int = 0, with_masks: bool = True
    ) -> None:
        if source not in POINT_SOURCES:
            raise ValueError(f'source must be one of {POINT_SOURCES}, got {source!r}')
        if keypoint_index < 0:
            raise ValueError(f'keypoint_index must be >= 0, got {keypoint_index}')
        self.source = source
        self.keypoint_index = keypoint_index
        self.with_masks = with_masks

    def _point(self, inst: dict | None, results: dict) -> np.ndarray:
        """(2,) float32 pixel point of one instance."""
        rid = results.get('id', '?')
        if not inst:
            raise TargetError(
                f'record {rid}: a point target needs an instance (got an image-level target)'
            )
        h, w = results['ori_shape']
        if self.source == 'keypoint':
            kps = inst.get('keypoints')
            k = self.keypoint_index
            if kps is None or len(kps) < 3 * (k + 1):
                raise TargetError(
                    f'record {rid}: point target needs keypoint {k}, the instance '
                    f'has {0 if kps is None else len(kps) // 3} keypoints'
                )
            x, y, v = (float(c) for c in kps[3 * k : 3 * k + 3])
            if v <= 0:
                raise TargetError(f'record {rid}: keypoint {k} is not labelled (v={v:g})')
        elif self.source == 'mask_centroid':
            if inst.get('mask') is None:
                raise TargetError(f'record {rid}: mask_centroid point target needs a mask')
            rows, cols = np.nonzero(decode_mask(inst['mask'], h, w))
            if rows.size == 0:
                raise TargetError(f'record {rid}: the mask of a point target is empty')
            x, y = float(cols.mean()) + 0.5, float(rows.mean()) + 0.5
        else:
            box = inst.get('bbox')
            if box is None or len(box) != 4:
                raise TargetError(f'record {rid}: box_center point target needs a bbox')
            x, y = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
        if not (np.isfinite([x, y]).all() and -1 <= x <= w + 1 and -1 <= y <= h + 1):
            raise TargetError(f'record {rid}: point ({x}, {y}) lies outside the {w}x{h} image')
        return np.clip(np.array([x, y], dtype=np.float32), 0, [w, h]).astype(np.float32)

    def _points(self, instances: Sequence[dict | None], results: dict) -> torch.Tensor:
        pts = [self._point(inst, results) for inst in instances]
        return torch.from_numpy(np.stack(pts)) if pts else torch.zeros(0, 2)

    def build(self, instances: Sequence[dict | None], results: dict) -> dict[str, torch.Tensor]:
        """``points`` (N, 2) float, normalised square-frame ``(x, y)``."""
        return dict(points=self._points(instances, results) / float(results['square_size']))

    def build_original(self, instances: Sequence[dict | None], results: dict) -> dict:
        """``points`` (N, 2) float pixels and (``with_masks``) ``masks`` (N, H, W) bool."""
        out = dict(points=self._points(instances, results))
        if self.with_masks:
            h, w = results['ori_shape']
            masks = []
            for inst in instances:
                if inst.get('mask') is None:
                    raise TargetError(
                        f'record {results.get("id", "?")}: with_masks=True but '
                        'a point target instance has no mask'
                    )
                masks.append(decode_mask(inst['mask'], h, w).astype(bool))
            out['masks'] = (
                torch.from_numpy(np.stack(masks))
                if masks
                else torch.zeros(0, h, w, dtype=torch.bool)
            )
        return out
