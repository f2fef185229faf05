# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""Records, templates, the data pipeline, datasets and samplers."""

from .collate import refvlm_collate
from .demo import ensure_demo_dataset, generate_demo_dataset
from .refvlm_dataset import RefVLMDataset
from .samplers import WeightedMultiDatasetSampler
from .template_bank import TemplateBank
from .transforms import (
    BuildUnitTargets,
    FormatConversation,
    GeometryTarget,
    LoadRecordDepth,
    LoadRecordImage,
    PackRefVLMInputs,
    PrepareImages,
    RasterizeVisualPrompts,
    RemapRecordUnits,
)

__all__ = [
    'RefVLMDataset',
    'WeightedMultiDatasetSampler',
    'LoadRecordImage',
    'LoadRecordDepth',
    'PrepareImages',
    'RasterizeVisualPrompts',
    'FormatConversation',
    'BuildUnitTargets',
    'PackRefVLMInputs',
    'RemapRecordUnits',
    'GeometryTarget',
    'refvlm_collate',
    'TemplateBank',
    'generate_demo_dataset',
    'ensure_demo_dataset',
]
