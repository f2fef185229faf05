# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""Overlays of predictions next to ground truth."""

from .draw import depth_to_rgb, draw_instances, side_by_side
from .hook import RefVLMVisualizationHook

__all__ = ['RefVLMVisualizationHook', 'draw_instances', 'depth_to_rgb', 'side_by_side']
