# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""``GeometryTarget``: a unit's targets from a function of one record instance.

The functional hook for plugin units whose geometry derives from what records already store. A
plugin writes only the mapping, ``fn(instance, results) -> (..., 2)`` pixel ``(x, y)``
coordinates, registers it in ``FUNCTIONS`` (or passes the function itself), and names it in the
pipeline::

    @FUNCTIONS.register_module()
    def box_diagonal(instance, results):
        x1, y1, x2, y2 = instance['bbox']
        return [[x1, y1], [x2, y2]]

    BuildUnitTargets(unit_targets=dict(
        line=dict(type=GeometryTarget, field='lines', from_instance=box_diagonal)))

Ready-made mappings (in ``FUNCTIONS``): :func:`box_center_xy`, :func:`mask_centroid_xy` and
:func:`keypoint_xy` (``dict(type='keypoint_xy', index=3)`` binds arguments).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch

from mmrefvlm.datasets.geometry import decode_mask
from mmrefvlm.registry import FUNCTIONS, TASK_UTILS

from .targets import BaseUnitTarget, TargetError

__all__ = [
    'GeometryTarget',
    'build_instance_mapping',
    'box_center_xy',
    'mask_centroid_xy',
    'keypoint_xy',
]

InstanceMapping = Callable[[dict | None, dict], Any]
#: Coordinates may lie this many pixels outside the image (rounding); they are clipped to it.
SLACK_PX = 1.0


def _need(instance: dict | None, key: str, results: dict, what: str) -> Any:
    if not instance:
        raise TargetError(
            f'record {results.get("id", "?")}: {what} needs an instance (got an image-level target)'
        )
    if instance.get(key) is None:
        raise TargetError(f'record {results.get("id", "?")}: {what} needs the instance {key!r}')
    return instance[key]


@FUNCTIONS.register_module()
def box_center_xy(instance: dict | None, results: dict) -> np.ndarray:
    """(2,) float32 pixel centre of the instance ``bbox`` (xyxy)."""
    box = _need(instance, 'bbox', results, 'box_center_xy')
    if len(box) != 4:
        raise TargetError(f'record {results.get("id", "?")}: bbox must have 4 numbers, got {box}')
    return np.array([(box[0] + box[2]) / 2, (box[1] + box[3]) / 2], dtype=np.float32)


@FUNCTIONS.register_module()
def mask_centroid_xy(instance: dict | None, results: dict) -> np.ndarray:
    """(2,) float32 mean of the instance mask's pixel centres (``col + 0.5``, ``row + 0.5``)."""
    mask = _need(instance, 'mask', results, 'mask_centroid_xy')
    h, w = results['ori_shape']
    rows, cols = np.nonzero(decode_mask(mask, h, w))
    if rows.size == 0:
        raise TargetError(f'record {results.get("id", "?")}: mask_centroid_xy of an empty mask')
    return np.array([cols.mean() + 0.5, rows.mean() + 0.5], dtype=np.float32)


@FUNCTIONS.register_module()
def keypoint_xy(instance: dict | None, results: dict, index: int = 0) -> np.ndarray:
    """(2,) float32 pixel ``(x, y)`` of keypoint ``index`` (COCO ``x, y, v`` triples); it must be
    labelled (``v > 0``)."""
    kps = _need(instance, 'keypoints', results, 'keypoint_xy')
    rid = results.get('id', '?')
    if len(kps) < 3 * (index + 1):
        raise TargetError(
            f'record {rid}: keypoint_xy needs keypoint {index}, the instance has '
            f'{len(kps) // 3} keypoints'
        )
    x, y, v = (float(c) for c in kps[3 * index : 3 * index + 3])
    if v <= 0:
        raise TargetError(f'record {rid}: keypoint {index} is not labelled (v={v:g})')
    return np.array([x, y], dtype=np.float32)


def build_instance_mapping(spec: InstanceMapping | str | Mapping) -> InstanceMapping:
    """A mapping function from its config.

    Args:
        spec (callable | str | Mapping): The function, the name of one in ``FUNCTIONS``, or
            ``dict(type=function or name, **kwargs)`` (the kwargs are bound, as
            ``functools.partial``).

    Returns:
        callable: ``fn(instance, results)``.

    Raises:
        KeyError: The name is not registered in ``FUNCTIONS``.
        TypeError: ``spec`` is none of the above.
    """
    kwargs: dict[str, Any] = {}
    fn: Any = spec
    if isinstance(spec, Mapping):
        kwargs = {k: v for k, v in spec.items() if k != 'type'}
        fn = spec.get('type')
    if isinstance(fn, str):
        name, fn = fn, FUNCTIONS.get(fn)
        if fn is None:
            raise KeyError(f'{name!r} is not registered in mmrefvlm FUNCTIONS')
    if not callable(fn):
        raise TypeError(f'from_instance must be a function, a FUNCTIONS name or a dict, got {fn!r}')
    return functools.partial(fn, **kwargs) if kwargs else fn


@TASK_UTILS.register_module()
class GeometryTarget(BaseUnitTarget):
    """Targets of a unit whose geometry is a function of one record instance.

    ``build`` gives ``<field>`` (N, ...) float32, the coordinates divided by the square-frame side
    S (the image sits at the top-left, so ``x * S`` is the pixel x of the original image).
    ``build_original`` gives ``<field>`` in original pixels and, with ``with_masks``, the
    instances' ``masks`` (N, H, W) bool (for metrics that test hits against the object).

    Args:
        field (str): Field name in ``gt_units.<unit>`` / ``gt_instances`` (e.g. ``'points'``).
        from_instance (callable | str | dict): The mapping ``fn(instance, results) -> (..., 2)``
            pixel ``(x, y)`` coordinates, the same shape for every instance (see
            :func:`build_instance_mapping`). ``instance`` is the record instance dict (None for
            an image-level target); ``results`` holds ``id``, ``ori_shape`` (H, W) and
            ``square_size``. Raise :class:`TargetError` for an unusable instance.
        with_masks (bool): Also return the instance masks from ``build_original``. Defaults to
            False.

    Raises:
        TargetError: (per record) Non-finite coordinates, coordinates more than 1 px outside the
            image (nearer ones are clipped to it), shapes that differ between instances or whose
            last axis is not 2, or a missing mask with ``with_masks``.
    """

    def __init__(
        self,
        field: str,
        from_instance: InstanceMapping | str | Mapping,
        *,
        with_masks: bool = False,
    ) -> None:
        if not isinstance(field, str) or not field.isidentifier():
            raise ValueError(f'field must be an identifier, got {field!r}')
        self.field = field
        self.from_instance = build_instance_mapping(from_instance)
        self.with_masks = with_masks

    def _coords(self, instance: dict | None, results: dict) -> np.ndarray:
        """(..., 2) float32 pixel coordinates of one instance, checked and clipped."""
        rid = results.get('id', '?')
        xy = np.asarray(self.from_instance(instance, results), dtype=np.float32)
        h, w = results['ori_shape']
        if xy.ndim == 0 or xy.shape[-1] != 2:
            raise TargetError(f'record {rid}: {self.field} must be (..., 2) (x, y), got {xy.shape}')
        if not np.isfinite(xy).all():
            raise TargetError(f'record {rid}: {self.field} has non-finite coordinates')
        lo, hi = -SLACK_PX, np.array([w, h], dtype=np.float32) + SLACK_PX
        if (xy < lo).any() or (xy > hi).any():
            raise TargetError(
                f'record {rid}: {self.field} {xy.tolist()} lie outside the {w}x{h} image'
            )
        return np.clip(xy, 0, [w, h]).astype(np.float32)

    def _stack(self, instances: Sequence[dict | None], results: dict) -> torch.Tensor:
        coords = [self._coords(inst, results) for inst in instances]
        if not coords:
            return torch.zeros(0, 2)
        if len({c.shape for c in coords}) > 1:
            raise TargetError(
                f'record {results.get("id", "?")}: {self.field} shapes differ between instances: '
                f'{sorted({c.shape for c in coords})}'
            )
        return torch.from_numpy(np.stack(coords))

    def build(self, instances: Sequence[dict | None], results: dict) -> dict[str, torch.Tensor]:
        """``<field>`` (N, ...) float32 in the square frame (pixels / S)."""
        return {self.field: self._stack(instances, results) / float(results['square_size'])}

    def build_original(self, instances: Sequence[dict | None], results: dict) -> dict:
        """``<field>`` (N, ...) float32 pixels and (``with_masks``) ``masks`` (N, H, W) bool."""
        out = {self.field: self._stack(instances, results)}
        if self.with_masks:
            h, w = results['ori_shape']
            masks = [
                decode_mask(_need(inst, 'mask', results, 'with_masks'), h, w).astype(bool)
                for inst in instances
            ]
            out['masks'] = (
                torch.from_numpy(np.stack(masks))
                if masks
                else torch.zeros(0, h, w, dtype=torch.bool)
            )
        return out
