# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""``PointTarget``: the ``point`` unit's targets, one (x, y) per ``<REF>``.

A core :class:`~mmrefvlm.datasets.GeometryTarget` with a choice of the core mapping functions:
the plugin only picks where the point comes from. Registered in ``TASK_UTILS`` and named per unit
in the pipeline config, so the core data pipeline builds ``gt_units.point`` without knowing the
unit: ``BuildUnitTargets(unit_targets=dict(point=dict(type=PointTarget)))``. (Equivalently,
without this class: ``dict(type=GeometryTarget, field='points', from_instance=dict(
type='keypoint_xy', index=0), with_masks=True)``.)
"""

from __future__ import annotations

import functools

from mmrefvlm.datasets.transforms import (
    GeometryTarget,
    box_center_xy,
    keypoint_xy,
    mask_centroid_xy,
)
from mmrefvlm.registry import TASK_UTILS

POINT_SOURCES = ('keypoint', 'mask_centroid', 'box_center')


@TASK_UTILS.register_module()
class PointTarget(GeometryTarget):
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
        mapping = dict(
            keypoint=functools.partial(keypoint_xy, index=keypoint_index),
            mask_centroid=mask_centroid_xy,
            box_center=box_center_xy,
        )[source]
        super().__init__('points', mapping, with_masks=with_masks)
        self.source, self.keypoint_index = source, keypoint_index
