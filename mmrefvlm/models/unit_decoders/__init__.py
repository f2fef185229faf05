# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""Visual-unit decoders: box, mask, keypoint and depth behind one contract (``base.py``)."""

from .base import BaseVisualUnitDecoder, has_two_phase_loss, two_phase_loss
from .box import PAPER_BOX_DECODER, BoxUnitDecoder, DetrBoxPredictor
from .depth import PAPER_DEPTH_DECODER, DepthUnitDecoder, depth_group_costs, silog
from .keypoint import (
    COCO_KEYPOINT_SIGMAS,
    PAPER_KEYPOINT_DECODER,
    KeypointUnitDecoder,
    keypoint_oks,
)
from .layers import FPNPixelDecoder, PyramidFusion, QueryDecoder, QueryProjection
from .mask import PAPER_MASK_DECODER, MaskUnitDecoder

__all__ = [
    'BaseVisualUnitDecoder',
    'has_two_phase_loss',
    'two_phase_loss',
    'BoxUnitDecoder',
    'MaskUnitDecoder',
    'KeypointUnitDecoder',
    'DepthUnitDecoder',
    'DetrBoxPredictor',
    'QueryProjection',
    'PyramidFusion',
    'QueryDecoder',
    'FPNPixelDecoder',
    'keypoint_oks',
    'silog',
    'depth_group_costs',
    'COCO_KEYPOINT_SIGMAS',
    'PAPER_BOX_DECODER',
    'PAPER_MASK_DECODER',
    'PAPER_KEYPOINT_DECODER',
    'PAPER_DEPTH_DECODER',
]
