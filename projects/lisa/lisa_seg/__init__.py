# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""LISA ("embedding as mask") as an mmrefvlm project. Importing registers ``LisaMaskDecoder``
(``MODELS``), ``SlotAnswerFormat`` (``TASK_UTILS``),
``UnionExpressionTargets`` (``TRANSFORMS``) and ``MMDetRefSegMetric`` (``METRICS``); the
SAM plugin (``projects.sam_plugin``) comes with it."""

import os.path as osp

from .answer_format import SlotAnswerFormat
from .decoder import LISA_BCE_LOSS, LISA_DICE_LOSS, LisaMaskDecoder
from .metrics import MMDetRefSegMetric
from .transforms import UnionExpressionTargets

#: The project's template sets (``lisa_seg.json``).
LISA_TEMPLATE_DIR = osp.join(osp.dirname(osp.abspath(__file__)), 'templates')

__all__ = [
    'LisaMaskDecoder',
    'LISA_BCE_LOSS',
    'LISA_DICE_LOSS',
    'SlotAnswerFormat',
    'UnionExpressionTargets',
    'MMDetRefSegMetric',
    'LISA_TEMPLATE_DIR',
]
