# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""SAM as an external ``mask`` decoder (REF-VLM stage 3). Importing registers
``SamMaskUnitDecoder`` (``MODELS``) and ``PackSamImage`` (``TRANSFORMS``)."""

from .decoder import SAM_PIXEL_MEAN, SAM_PIXEL_STD, SamMaskUnitDecoder, bce_dice_losses
from .sam_model import (
    SAM_VISION_PRESETS,
    build_sam_model,
    convert_official_sam_state,
    load_official_sam_checkpoint,
    sam_config_dict,
)
from .transforms import PackSamImage

__all__ = [
    'SamMaskUnitDecoder',
    'PackSamImage',
    'build_sam_model',
    'sam_config_dict',
    'convert_official_sam_state',
    'load_official_sam_checkpoint',
    'SAM_VISION_PRESETS',
    'SAM_PIXEL_MEAN',
    'SAM_PIXEL_STD',
    'bce_dice_losses',
]
