# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""Data pipeline transforms (registered in ``TRANSFORMS``; target builders in ``TASK_UTILS``)."""

from .conversation import FormatConversation, RefTarget, iter_ref_targets
from .formatting import BuildUnitTargets, PackRefVLMInputs
from .geometry_target import (
    GeometryTarget,
    box_center_xy,
    build_instance_mapping,
    keypoint_xy,
    mask_centroid_xy,
)
from .images import PrepareImages, pad_to_square
from .loading import LoadRecordDepth, LoadRecordImage, SampleLoadError, read_rgb_image
from .remap import RemapRecordUnits
from .targets import (
    BaseUnitTarget,
    BoxTarget,
    DepthTarget,
    KeypointTarget,
    MaskTarget,
    TargetError,
    union_target_instance,
)
from .visual_prompts import RasterizeVisualPrompts

__all__ = [
    'LoadRecordImage',
    'LoadRecordDepth',
    'SampleLoadError',
    'read_rgb_image',
    'PrepareImages',
    'pad_to_square',
    'RasterizeVisualPrompts',
    'FormatConversation',
    'RefTarget',
    'iter_ref_targets',
    'BuildUnitTargets',
    'PackRefVLMInputs',
    'BaseUnitTarget',
    'BoxTarget',
    'MaskTarget',
    'KeypointTarget',
    'DepthTarget',
    'TargetError',
    'union_target_instance',
    'RemapRecordUnits',
    'GeometryTarget',
    'build_instance_mapping',
    'box_center_xy',
    'mask_centroid_xy',
    'keypoint_xy',
]
