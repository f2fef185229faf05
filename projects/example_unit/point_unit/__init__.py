# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""The ``point`` unit plugin: decoder (a head on the core DETR assembly), target builder (a core
``GeometryTarget``), template set, overlay drawer and metric; records are rewritten by the core
``RemapRecordUnits``.

Importing this package registers everything in mmrefvlm's registries (``MODELS``, ``TASK_UTILS``,
``METRICS``, ``UNIT_DRAWERS``); configs load it with
``custom_imports = dict(imports=['projects.example_unit.point_unit'])``.
"""

from .decoder import PointerPointHead, PointUnitDecoder
from .drawer import PointUnitDrawer
from .metric import PointMetric, points_in_masks
from .targets import PointTarget
from .transforms import POINT_TEMPLATE_DIR, RemapRecordUnits

__all__ = [
    'PointUnitDecoder',
    'PointerPointHead',
    'PointUnitDrawer',
    'PointMetric',
    'points_in_masks',
    'PointTarget',
    'RemapRecordUnits',
    'POINT_TEMPLATE_DIR',
]
