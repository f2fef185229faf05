# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""``SegMaskTarget``: the core mask target, allowing the all-zero masks of empty expressions."""

from __future__ import annotations

import numpy as np

from mmrefvlm.datasets.geometry import decode_mask
from mmrefvlm.datasets.transforms import MaskTarget, TargetError
from mmrefvlm.registry import TASK_UTILS


@TASK_UTILS.register_module()
class SegMaskTarget(MaskTarget):
    """``masks`` (N, size, size) bool in the square frame, like :class:`MaskTarget`, except that
    an empty mask is a valid target: LISA fine-tuned on gRefCOCO answers ``[SEG]`` for an
    expression that matches nothing and learns to decode an all-zero mask for it.

    Args:
        size (int): Side of the square-frame target. Defaults to 336.
    """

    def _decode(self, inst: dict | None, results: dict) -> np.ndarray:
        h, w = results['ori_shape']
        if not inst or inst.get('mask') is None:
            raise TargetError(f'record {results.get("id")}: mask target instance has no mask')
        return decode_mask(inst['mask'], h, w)
