# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""Overlays of predictions next to ground truth, and of inference results; per-unit drawers in
``UNIT_DRAWERS`` (:mod:`.drawers`)."""

from .answer import answer_segments, color_hex, draw_answer, phrase_colors
from .draw import depth_to_rgb, draw_instances, draw_panels, side_by_side
from .drawers import (
    META_FIELDS,
    BoxDrawer,
    DepthDrawer,
    DrawPlan,
    KeypointDrawer,
    MaskDrawer,
    UnitDrawer,
    plan_drawing,
)
from .hook import RefVLMVisualizationHook

__all__ = [
    'RefVLMVisualizationHook',
    'draw_instances',
    'draw_panels',
    'depth_to_rgb',
    'side_by_side',
    'draw_answer',
    'answer_segments',
    'phrase_colors',
    'color_hex',
    'UnitDrawer',
    'DrawPlan',
    'META_FIELDS',
    'plan_drawing',
    'BoxDrawer',
    'MaskDrawer',
    'KeypointDrawer',
    'DepthDrawer',
]
