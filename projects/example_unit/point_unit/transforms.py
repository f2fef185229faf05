# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""The ``point`` example's template set. Records are rewritten to ``point`` records by the core
:class:`~mmrefvlm.datasets.RemapRecordUnits` (re-exported here for the first release's imports)."""

from __future__ import annotations

import os.path as osp

from mmrefvlm.datasets.transforms import RemapRecordUnits

#: The template sets shipped with this project (``point.json``).
POINT_TEMPLATE_DIR = osp.join(osp.dirname(osp.abspath(__file__)), 'templates')

__all__ = ['POINT_TEMPLATE_DIR', 'RemapRecordUnits']
