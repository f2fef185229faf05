# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""Pure functions behind the metrics (numpy in and out; tensors accepted)."""

from .cider import cider_d
from .coco import (
    COCO_KEYPOINT_SIGMAS,
    DET_STAT_NAMES,
    KPT_STAT_NAMES,
    build_coco_gt,
    encode_mask,
    run_coco_eval,
    xyxy_to_xywh,
)
from .depth import depth_errors
from .geometry import (
    box_area,
    box_inter_union,
    box_iou,
    mask_inter_union,
    mask_iou,
    pair_inter_union,
    to_numpy,
    union_mask,
)
from .matching import greedy_paired_ious, match_one_to_one
from .text import (
    caption_tokenize,
    count_answer_refs,
    normalize_vqa_answer,
    pope_yes_no,
    strip_trp,
    vqa_accuracy,
)

__all__ = [
    'to_numpy',
    'box_area',
    'box_inter_union',
    'box_iou',
    'mask_inter_union',
    'mask_iou',
    'pair_inter_union',
    'union_mask',
    'match_one_to_one',
    'greedy_paired_ious',
    'cider_d',
    'caption_tokenize',
    'strip_trp',
    'normalize_vqa_answer',
    'vqa_accuracy',
    'pope_yes_no',
    'count_answer_refs',
    'depth_errors',
    'encode_mask',
    'xyxy_to_xywh',
    'build_coco_gt',
    'run_coco_eval',
    'COCO_KEYPOINT_SIGMAS',
    'DET_STAT_NAMES',
    'KPT_STAT_NAMES',
]
