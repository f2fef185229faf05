# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""Per-unit target builders: record instances -> decoder targets in the square frame.

A builder is registered in ``TASK_UTILS`` and named in the pipeline config by unit
(``BuildUnitTargets(unit_targets=dict(box=dict(type='BoxTarget'), ...))``), so a plugin unit brings
its own builder; nothing here enumerates units.
"""

from __future__ import annotations

from abc import ABCMeta, abstractmethod
from collections.abc import Sequence

import cv2
import numpy as np
import torch

from mmrefvlm.datasets import geometry
from mmrefvlm.registry import TASK_UTILS


class TargetError(ValueError):
    """A record's target geometry is unusable for its unit (inverted box, empty mask...)."""


class RecordFormatError(TargetError):
    """A record breaks docs/data_format.md: found in the pipeline by the same per-field check the
    validator (``tools/misc/validate_records.py``) uses. Names the record id and the field.

    A ``TargetError`` (so a ``ValueError``): by default it stops training; with
    ``skip_bad_samples=True`` the dataset counts and skips the record like any other bad sample.
    """


def record_error(rid: object, field: str, message: str, cls: type = RecordFormatError):
    """``cls(f'record {rid}: {field}: {message}')``: the form of every per-record error."""
    return cls(f'record {rid}: {field}: {message}' if field else f'record {rid}: {message}')


def decode_record_mask(
    mask: object, h: int, w: int, rid: object, field: str, allow_empty: bool = False
) -> np.ndarray:
    """Check a record mask with the validator's :func:`geometry.check_mask` (well formed, of the
    image size, not empty unless ``allow_empty``), then decode it to (h, w) bool.

    Raises:
        TargetError: Any problem, naming the record and the field.
    """
    try:  # one pass: each RLE parsed and each polygon set rasterised once
        err, decoded = geometry.check_and_decode_mask(mask, h, w, allow_empty)
    except (ValueError, TypeError, OverflowError, MemoryError) as exc:  # pycocotools' own checks
        raise record_error(rid, field, f'cannot be decoded ({exc})', TargetError) from exc
    if err is not None:
        raise record_error(rid, field, err, TargetError)
    return decoded


def union_target_instance(
    instances: Sequence[dict], targets: Sequence[int], hw: tuple[int, int], rid: object
) -> dict:
    """A new instance whose mask is the union of ``instances[t]['mask']`` for ``t`` in
    ``targets`` (all-zero when ``targets`` is empty): the one target of an expression that
    refers to several objects, or to none, for methods that decode one mask per expression
    (gRefCOCO practice). Returns ``{'mask': RLE, 'bbox': box or None, 'category': 'union'}``.

    Raises:
        TargetError: A target index is out of range or its instance has no mask.
    """
    h, w = hw
    union = np.zeros((h, w), dtype=bool)
    for t in targets:
        if not 0 <= t < len(instances) or instances[t].get('mask') is None:
            raise TargetError(f'record {rid}: target {t} has no instance mask to segment')
        union |= decode_record_mask(instances[t]['mask'], h, w, rid, f'instances[{t}].mask')
    rle = geometry.encode_mask(union)
    return {'mask': rle, 'bbox': geometry.mask_bbox(rle, h, w), 'category': 'union'}


class BaseUnitTarget(metaclass=ABCMeta):
    """Builds one unit's targets for the ``<REF>`` tokens of a sample.

    ``build`` receives, per ``<REF>`` of this unit in token order, the target instance dict (or None
    for image-level targets) and returns tensors stacked over those refs, in the square frame
    (normalised by S = max(H, W); the image sits top-left). ``build_original`` returns the same
    targets in original-image pixels for metrics.
    """

    @abstractmethod
    def build(self, instances: Sequence[dict | None], results: dict) -> dict[str, torch.Tensor]:
        """Square-frame targets, each value (N, ...)."""

    def build_original(self, instances: Sequence[dict | None], results: dict) -> dict:
        """Original-pixel targets for metrics (default: none)."""
        return {}


def _rid(results: dict) -> str:
    return str(results.get('id', '?'))


def check_bbox(bbox: Sequence[float], h: int, w: int, rid: str) -> np.ndarray:
    """Validate an xyxy pixel box against an HxW image with the validator's
    :func:`geometry.check_bbox`; returns it clipped to the image, as float32."""
    err = geometry.check_bbox(bbox, w, h)
    if err is not None:
        raise record_error(rid, 'box target', err, TargetError)
    b = np.asarray(bbox, dtype=np.float32)
    return np.clip(b, 0, [w, h, w, h]).astype(np.float32)


def square_resize(
    arr: np.ndarray, square: int, size: int, interp: int, fill: float = 0
) -> np.ndarray:
    """Pad (H, W) right/bottom to (square, square) with ``fill`` and resize to (size, size)."""
    out = np.full((square, square), fill, dtype=arr.dtype)
    out[: arr.shape[0], : arr.shape[1]] = arr
    if square == size:
        return out
    return cv2.resize(out, (size, size), interpolation=interp)


@TASK_UTILS.register_module()
class BoxTarget(BaseUnitTarget):
    """``bboxes``: (N, 4) float normalised xyxy in the square frame."""

    def build(self, instances, results):  # noqa: D102
        h, w = results['ori_shape']
        s = results['square_size']
        boxes = [
            check_bbox(inst.get('bbox') if inst else None, h, w, _rid(results)) / s
            for inst in instances
        ]
        return dict(bboxes=torch.from_numpy(np.stack(boxes)) if boxes else torch.zeros(0, 4))

    def build_original(self, instances, results):  # noqa: D102
        h, w = results['ori_shape']
        boxes = [check_bbox(inst['bbox'], h, w, _rid(results)) for inst in instances]
        return dict(bboxes=torch.from_numpy(np.stack(boxes)) if boxes else torch.zeros(0, 4))


@TASK_UTILS.register_module()
class MaskTarget(BaseUnitTarget):
    """``masks``: (N, size, size) bool in the square frame (area-resized, then > 0.5: binary).

    Args:
        size (int): Side of the square-frame target. Defaults to 336.
        allow_empty (bool): Accept a well-formed mask without foreground as a target (methods
            that decode one mask per expression and train an expression that refers to nothing
            towards an all-zero mask: LISA on gRefCOCO, AnyRef; see
            :func:`union_target_instance`). Defaults to False: an empty target mask is a
            record error.
    """

    def __init__(self, size: int = 336, *, allow_empty: bool = False) -> None:
        if size <= 0:
            raise ValueError(f'mask target size must be positive, got {size}')
        self.size, self.allow_empty = size, allow_empty

    def _decode(self, inst: dict | None, results: dict) -> np.ndarray:
        h, w = results['ori_shape']
        if not inst or inst.get('mask') is None:
            raise TargetError(f'record {_rid(results)}: mask target instance has no mask')
        return decode_record_mask(
            inst['mask'], h, w, _rid(results), 'mask target', allow_empty=self.allow_empty
        )

    def build(self, instances, results):  # noqa: D102
        s = results['square_size']
        out = [
            square_resize(self._decode(i, results).astype(np.float32), s, self.size, cv2.INTER_AREA)
            > 0.5
            for i in instances
        ]
        if not out:
            return dict(masks=torch.zeros(0, self.size, self.size, dtype=torch.bool))
        return dict(masks=torch.from_numpy(np.stack(out)))

    def build_original(self, instances, results):  # noqa: D102
        h, w = results['ori_shape']
        out = [self._decode(i, results) for i in instances]
        return dict(
            masks=torch.from_numpy(np.stack(out)) if out else torch.zeros(0, h, w, dtype=torch.bool)
        )


@TASK_UTILS.register_module()
class KeypointTarget(BaseUnitTarget):
    """``keypoints``: (N, K, 3) float (x, y normalised, visibility 0/1/2) and ``bboxes`` (N, 4).

    Unlabelled keypoints (v = 0) get coordinates 0 and must be ignored by losses and metrics.
    """

    def __init__(self, num_keypoints: int) -> None:
        if num_keypoints <= 0:
            raise ValueError(f'num_keypoints must be positive, got {num_keypoints}')
        self.num_keypoints = num_keypoints

    def _kpts(self, inst: dict | None, results: dict) -> np.ndarray:
        kp = None if not inst else inst.get('keypoints')
        if not isinstance(kp, (list, tuple)) or len(kp) != 3 * self.num_keypoints:
            got = len(kp) if isinstance(kp, (list, tuple)) else repr(kp)[:40]
            raise TargetError(
                f'record {_rid(results)}: keypoint target needs '
                f'{3 * self.num_keypoints} numbers, got {got}'
            )
        h, w = results['ori_shape']
        err = geometry.check_keypoints(list(kp), w, h)  # the validator's rule
        if err is not None:
            raise record_error(_rid(results), 'keypoint target', err, TargetError)
        k = np.asarray(kp, dtype=np.float32).reshape(self.num_keypoints, 3)
        k[k[:, 2] == 0, :2] = 0
        return k

    def build(self, instances, results):  # noqa: D102
        s = results['square_size']
        kps = [self._kpts(i, results) for i in instances]
        out = BoxTarget().build(instances, results)
        k = torch.from_numpy(np.stack(kps)) if kps else torch.zeros(0, self.num_keypoints, 3)
        k[..., :2] /= s
        out['keypoints'] = k
        return out

    def build_original(self, instances, results):  # noqa: D102
        kps = [self._kpts(i, results) for i in instances]
        out = BoxTarget().build_original(instances, results)
        out['keypoints'] = (
            torch.from_numpy(np.stack(kps)) if kps else torch.zeros(0, self.num_keypoints, 3)
        )
        return out


@TASK_UTILS.register_module()
class DepthTarget(BaseUnitTarget):
    """``depth``: (N, size, size) float metres and ``valid`` (N, size, size) bool.

    An image-level target (None) is the whole depth map; an instance target restricts ``valid`` to
    that instance's mask. Padding and zero-depth pixels are invalid.
    """

    def __init__(self, size: int = 336) -> None:
        if size <= 0:
            raise ValueError(f'depth target size must be positive, got {size}')
        self.size = size

    def build(self, instances, results):  # noqa: D102
        depth = results.get('gt_depth')
        if depth is None and instances:
            raise TargetError(
                f'record {_rid(results)}: depth unit used but the record has no depth'
            )
        s = results['square_size']
        maps, valids = [], []
        for inst in instances:
            d = square_resize(depth, s, self.size, cv2.INTER_NEAREST)
            v = d > 0
            if inst is not None and inst.get('mask') is not None:
                h, w = results['ori_shape']
                m = (
                    square_resize(
                        decode_record_mask(
                            inst['mask'], h, w, _rid(results), 'depth target'
                        ).astype(np.uint8),
                        s,
                        self.size,
                        cv2.INTER_NEAREST,
                    )
                    > 0
                )
                v &= m
            maps.append(d)
            valids.append(v)
        if not maps:
            return dict(
                depth=torch.zeros(0, self.size, self.size),
                valid=torch.zeros(0, self.size, self.size, dtype=torch.bool),
            )
        return dict(
            depth=torch.from_numpy(np.stack(maps)), valid=torch.from_numpy(np.stack(valids))
        )
