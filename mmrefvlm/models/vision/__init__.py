# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""Vision encoders: CLIP-ViT (image tokens for the LLM) and the CLIP-ConvNeXt pyramid (decoders)."""

from .base import HFVisionBackbone, build_hf_vision_model
from .clip_vit import CLIPViTEncoder
from .convert import convert_checkpoint, convert_open_clip_convnext, extract_trunk
from .convnext_pyramid import ConvNeXtPyramid
from .presets import (
    CLIP_CONVNEXT_L_512,
    CLIP_VIT_L14_336,
    OPENAI_CLIP_MEAN,
    OPENAI_CLIP_STD,
    TINY_CLIP_VIT,
    TINY_CONVNEXT,
)

__all__ = [
    'HFVisionBackbone',
    'build_hf_vision_model',
    'CLIPViTEncoder',
    'ConvNeXtPyramid',
    'convert_open_clip_convnext',
    'convert_checkpoint',
    'extract_trunk',
    'CLIP_VIT_L14_336',
    'CLIP_CONVNEXT_L_512',
    'TINY_CLIP_VIT',
    'TINY_CONVNEXT',
    'OPENAI_CLIP_MEAN',
    'OPENAI_CLIP_STD',
]
