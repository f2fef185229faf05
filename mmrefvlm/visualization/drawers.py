# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""Per-unit overlay drawers: how each unit's instance fields are drawn, in ``UNIT_DRAWERS``.

``draw_instances`` (``tools/test.py --show-dir``, the inferencer's overlays) draws every field of
an ``InstanceData``-like mapping through the drawer registered for it; the core units are
registered here exactly as a plugin registers its own::

    from mmrefvlm.registry import UNIT_DRAWERS
    from mmrefvlm.visualization import UnitDrawer

    @UNIT_DRAWERS.register_module()
    class LineDrawer(UnitDrawer):
        unit = 'line'
        fields = ('lines',)  # (N, 2, 2) original pixels

        def draw(self, canvas, values, colors, scale):
            for (p, q), color in zip(values['lines'] * scale, colors):
                cv2.line(canvas, tuple(map(int, p)), tuple(map(int, q)), color, 2)

Dispatch: an entry's field goes to the drawer registered for the entry's unit (``units``) when
that drawer claims the field, else to the first registered drawer claiming the field (so a plugin
unit that predicts ``masks`` is drawn as masks). A field no drawer claims is not silently dropped:
the overlay shows "not drawn: <field>" and :func:`plan_drawing` reports it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import cv2
import numpy as np
import torch

from mmrefvlm.registry import UNIT_DRAWERS

__all__ = [
    'UnitDrawer',
    'DrawPlan',
    'META_FIELDS',
    'plan_drawing',
    'entry_values',
    'BoxDrawer',
    'MaskDrawer',
    'KeypointDrawer',
    'DepthDrawer',
]

RGB = tuple[int, int, int]
#: Fields that describe entries rather than geometry: never drawn, never reported.
META_FIELDS = frozenset(
    {'labels', 'units', 'unit_fields', 'group_ids', 'instance_ids', 'scores', 'phrases'}
)


def to_numpy(x: Any) -> np.ndarray:
    """A tensor (any device) or array-like as a numpy array."""
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


class UnitDrawer:
    """Draws one unit's instance fields (subclass, set the class attributes, register it).

    Attributes:
        unit (str): The unit whose entries this drawer draws first.
        fields (tuple[str, ...]): The instance fields it draws.
        order (int): Drawing order, lower first (masks 10, boxes 30, keypoints 40).
        panel (bool): Drawn beside the image by :meth:`panels` (dense maps such as depth) instead
            of onto it by :meth:`draw`.
    """

    unit: ClassVar[str]
    fields: ClassVar[tuple[str, ...]]
    order: ClassVar[int] = 50
    panel: ClassVar[bool] = False

    def draw(
        self,
        canvas: np.ndarray,
        values: Mapping[str, np.ndarray],
        colors: Sequence[RGB],
        scale: int,
    ) -> None:
        """Draw in place.

        Args:
            canvas (np.ndarray): (H * scale, W * scale, 3) uint8 RGB.
            values (Mapping[str, np.ndarray]): This drawer's fields, each (n, ...) for the n
                entries to draw, in original-image pixels.
            colors (Sequence[tuple]): RGB colour of each of the n entries.
            scale (int): Upscale factor of the canvas (multiply coordinates by it).
        """

    def anchors(self, values: Mapping[str, np.ndarray]) -> np.ndarray | None:
        """(n, 2) pixel ``(x, y)`` where each entry's label goes, or None (no label here)."""
        return None

    def panels(
        self, values: Mapping[str, np.ndarray], titles: Sequence[str]
    ) -> list[tuple[str, np.ndarray]]:
        """Panels beside the image (``panel = True`` drawers): ``(title, (h, w, 3) uint8)``."""
        return []


@dataclass
class DrawPlan:
    """Which drawer draws which entries of which fields (:func:`plan_drawing`)."""

    num: int  # number of entries
    groups: list[tuple[UnitDrawer, dict[str, list[int]]]] = field(default_factory=list)
    undrawn: dict[str, list[str]] = field(default_factory=dict)  # field -> units of its entries


def _present(value: np.ndarray) -> np.ndarray:
    """(n,) bool: entries whose value is real (not the NaN / False filler of merged units)."""
    flat = value.reshape(len(value), int(np.prod(value.shape[1:])))  # -1 fails for 0 entries
    if value.dtype == bool:
        return np.asarray(flat.any(1), bool)
    if np.issubdtype(value.dtype, np.floating):
        return np.asarray(np.isfinite(flat).all(1) & (flat.shape[1] > 0), bool)
    return np.ones(len(value), bool)


def _num_entries(inst: Mapping) -> int:
    labels = inst.get('labels')
    if labels is not None and len(labels):
        return len(labels)
    lengths = [len(inst[k]) for k in inst.keys() if isinstance(inst[k], (torch.Tensor, np.ndarray))]
    return max(lengths, default=0)


def _drawers() -> tuple[dict[str, UnitDrawer], dict[str, UnitDrawer]]:
    """(unit -> its last registered drawer, field -> first registered drawer claiming it)."""
    by_unit: dict[str, UnitDrawer] = {}
    by_field: dict[str, UnitDrawer] = {}
    for cls in UNIT_DRAWERS.module_dict.values():
        drawer = cls()
        by_unit[drawer.unit] = drawer
        for name in drawer.fields:
            by_field.setdefault(name, drawer)
    return by_unit, by_field


def plan_drawing(inst: Mapping) -> DrawPlan:
    """Assign each (entry, field) of ``inst`` to a drawer.

    Args:
        inst (Mapping): ``InstanceData`` or dict; optional ``units`` (the unit of each entry) and
            ``unit_fields`` (per entry, the fields its unit produced); other fields are (N, ...).

    Returns:
        DrawPlan: Drawer groups in drawing order and the fields no drawer claims.
    """
    num = _num_entries(inst)
    units = list(inst.get('units') or [None] * num)
    own = inst.get('unit_fields')
    by_unit, by_field = _drawers()
    plan = DrawPlan(num)
    assigned: dict[int, tuple[UnitDrawer, dict[str, list[int]]]] = {}
    for name in inst.keys():
        value = inst[name]
        if name in META_FIELDS or not isinstance(value, (torch.Tensor, np.ndarray)):
            continue
        present = _present(to_numpy(value)) if len(value) == num else np.zeros(num, bool)
        for i in range(num):
            if not (name in own[i] if own is not None else present[i]):
                continue
            drawer = by_unit.get(units[i]) if units[i] is not None else None
            if drawer is None or name not in drawer.fields:
                drawer = by_field.get(name)
            if drawer is None:
                plan.undrawn.setdefault(name, [])
                if str(units[i]) not in plan.undrawn[name]:
                    plan.undrawn[name].append(str(units[i]))
                continue
            group = assigned.setdefault(id(drawer), (drawer, {}))
            group[1].setdefault(name, []).append(i)
    plan.groups = sorted(assigned.values(), key=lambda g: g[0].order)
    return plan


def entry_values(inst: Mapping, entries: Mapping[str, list[int]]) -> tuple[list[int], dict]:
    """The entries a drawer draws (sorted union) and its fields' values at those entries (a field
    value of an entry the drawer does not draw for that field is left as it is)."""
    idx = sorted({i for rows in entries.values() for i in rows})
    return idx, {name: to_numpy(inst[name])[idx] for name in entries}


@UNIT_DRAWERS.register_module()
class MaskDrawer(UnitDrawer):
    """``masks`` (N, H, W) bool: half-transparent fill and a white outline."""

    unit = 'mask'
    fields = ('masks',)
    order = 10

    def draw(self, canvas, values, colors, scale):  # noqa: D102
        h, w = canvas.shape[:2]
        for mask, color in zip(values['masks'].astype(bool), colors, strict=False):
            if not mask.any():
                continue
            big = cv2.resize(mask.astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST) > 0
            canvas[big] = (0.5 * canvas[big] + 0.5 * np.asarray(color)).astype(np.uint8)
            contours, _ = cv2.findContours(
                big.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE
            )
            cv2.drawContours(canvas, contours, -1, (255, 255, 255), 1)  # visible on any colour


@UNIT_DRAWERS.register_module()
class BoxDrawer(UnitDrawer):
    """``bboxes`` (N, 4) xyxy: a rectangle; the entry's label at its top-left corner."""

    unit = 'box'
    fields = ('bboxes',)
    order = 30

    def draw(self, canvas, values, colors, scale):  # noqa: D102
        for box, color in zip(values['bboxes'], colors, strict=False):
            if np.isfinite(box).all():
                p = tuple(int(v * scale) for v in box)
                cv2.rectangle(canvas, p[:2], p[2:], tuple(int(c) for c in color), 2)

    def anchors(self, values):  # noqa: D102
        return values['bboxes'][:, :2]


@UNIT_DRAWERS.register_module()
class KeypointDrawer(UnitDrawer):
    """``keypoints`` (N, K, 3) ``(x, y, v)``: a dot per keypoint with ``v > 0``."""

    unit = 'keypoint'
    fields = ('keypoints',)
    order = 40

    def draw(self, canvas, values, colors, scale):  # noqa: D102
        for kps, color in zip(values['keypoints'], colors, strict=False):
            for x, y, v in kps:
                if np.isfinite(x) and np.isfinite(y) and v > 0:
                    cv2.circle(
                        canvas,
                        (int(x * scale), int(y * scale)),
                        3,
                        tuple(int(c) for c in color),
                        -1,
                    )


@UNIT_DRAWERS.register_module()
class DepthDrawer(UnitDrawer):
    """``depth`` (N, H, W) float metres: a colour-mapped panel per entry (near = warm)."""

    unit = 'depth'
    fields = ('depth',)
    panel = True

    def panels(self, values, titles):  # noqa: D102
        from .draw import depth_to_rgb  # draw imports this module

        return [(t, depth_to_rgb(d)) for d, t in zip(values['depth'], titles, strict=False)]
