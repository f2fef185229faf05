# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""GSVA as an mmrefvlm project: LISA (``projects.lisa``) plus ``[REJ]``, several weight-shared
``[SEG]`` per answer and GSVA's metrics. Importing registers ``GSVARefVLM`` (``MODELS``),
``GroupedExpressionDataset`` (``DATASETS``), ``SampleExpressions`` (``TRANSFORMS``) and
``GSVAGRESMetric`` (``METRICS``), and the LISA project's classes."""

import os.path as osp

from .datasets import GroupedExpressionDataset, SampleExpressions
from .metric import GSVAGRESMetric, gt_slot_masks
from .model import GSVARefVLM

#: The project's template sets (``gsva_seg.json``).
GSVA_TEMPLATE_DIR = osp.join(osp.dirname(osp.abspath(__file__)), 'templates')

__all__ = [
    'GSVARefVLM',
    'GroupedExpressionDataset',
    'SampleExpressions',
    'GSVAGRESMetric',
    'gt_slot_masks',
    'GSVA_TEMPLATE_DIR',
]
