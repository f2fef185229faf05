# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""Overlays of predictions next to ground truth, and of inference results."""

from .answer import answer_segments, color_hex, draw_answer, phrase_colors
from .draw import depth_to_rgb, draw_instances, side_by_side
from .hook import RefVLMVisualizationHook

__all__ = [
    'RefVLMVisualizationHook',
    'draw_instances',
    'depth_to_rgb',
    'side_by_side',
    'draw_answer',
    'answer_segments',
    'phrase_colors',
    'color_hex',
]
