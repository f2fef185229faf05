# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""Visual-unit decoders: box, mask, keypoint and depth behind one contract (``base.py``); the
DETR-like ones (box, keypoint, mask) are heads on one shared assembly (``detr.py``)."""

from .base import BaseVisualUnitDecoder, has_two_phase_loss, two_phase_loss
from .box import PAPER_BOX_DECODER, BoxUnitDecoder, BoxUnitHead, PointerBoxHead
from .depth import PAPER_DEPTH_DECODER, DepthUnitDecoder, depth_group_costs, silog
from .detr import DETR_DECODER, DetrAssembly, DetrOutput, register_legacy_keys
from .keypoint import (
    COCO_KEYPOINT_SIGMAS,
    PAPER_KEYPOINT_DECODER,
    KeypointUnitDecoder,
    keypoint_oks,
)
from .keypoint_head import KeypointUnitHead
from .layers import FPNPixelDecoder, FusedMemory, PyramidFusion, QueryDecoder, QueryProjection
from .mask import PAPER_MASK_DECODER, MaskUnitDecoder, MaskUnitHead

__all__ = [
    'BaseVisualUnitDecoder',
    'has_two_phase_loss',
    'two_phase_loss',
    'BoxUnitDecoder',
    'MaskUnitDecoder',
    'KeypointUnitDecoder',
    'DepthUnitDecoder',
    'DetrAssembly',
    'DetrOutput',
    'DETR_DECODER',
    'register_legacy_keys',
    'BoxUnitHead',
    'PointerBoxHead',
    'KeypointUnitHead',
    'MaskUnitHead',
    'FusedMemory',
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
