# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""Models: the LLM factory, vision encoders, prompt encoders, router, unit decoders, RefVLM."""

from .data_preprocessors import RefVLMDataPreprocessor
from .llms import build_causal_lm
from .losses import GIoULoss
from .matchers import GroupedHungarianMatcher, grouped_assignment
from .projectors import MLPProjector
from .prompt_encoders import MaskGuidedAggregation
from .refvlm import RefVLM
from .routers import LatentEmbeddingRouter, SpecialTokenRefParser
from .unit_decoders import (
    BaseVisualUnitDecoder,
    BoxUnitDecoder,
    BoxUnitHead,
    DepthUnitDecoder,
    KeypointUnitDecoder,
    KeypointUnitHead,
    MaskUnitDecoder,
    MaskUnitHead,
)
from .vision import CLIPViTEncoder, ConvNeXtPyramid

__all__ = [
    'build_causal_lm',
    'RefVLMDataPreprocessor',
    'MLPProjector',
    'RefVLM',
    'LatentEmbeddingRouter',
    'SpecialTokenRefParser',
    'CLIPViTEncoder',
    'ConvNeXtPyramid',
    'MaskGuidedAggregation',
    'BaseVisualUnitDecoder',
    'BoxUnitDecoder',
    'MaskUnitDecoder',
    'KeypointUnitDecoder',
    'DepthUnitDecoder',
    'BoxUnitHead',
    'MaskUnitHead',
    'KeypointUnitHead',
    'GroupedHungarianMatcher',
    'grouped_assignment',
    'GIoULoss',
]
