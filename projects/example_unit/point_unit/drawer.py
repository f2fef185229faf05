# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""``PointUnitDrawer``: how ``tools/test.py --show-dir`` and the inferencer draw the ``point`` unit.

Registered in ``UNIT_DRAWERS`` like the core units' drawers; the overlay code finds it by the
entries' unit (``point``) and the field it claims (``points``).
"""

from __future__ import annotations

import cv2
import numpy as np

from mmrefvlm.registry import UNIT_DRAWERS
from mmrefvlm.visualization import UnitDrawer


@UNIT_DRAWERS.register_module()
class PointUnitDrawer(UnitDrawer):
    """``points`` (N, 2) ``(x, y)`` original pixels: a dot in the entry's colour on a white ring
    (visible on any background); the entry's label is written next to it."""

    unit = 'point'
    fields = ('points',)
    order = 45  # over masks and boxes

    def draw(self, canvas, values, colors, scale):  # noqa: D102
        for (x, y), color in zip(values['points'], colors, strict=False):
            if np.isfinite(x) and np.isfinite(y):
                centre = (int(x * scale), int(y * scale))
                cv2.circle(canvas, centre, 5, (255, 255, 255), -1)
                cv2.circle(canvas, centre, 3, tuple(int(c) for c in color), -1)

    def anchors(self, values):  # noqa: D102
        return values['points'] + np.array([4.0, 0.0], dtype=np.float32)  # right of the dot
