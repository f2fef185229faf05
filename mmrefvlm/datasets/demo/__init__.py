# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""The embedded demo dataset: coloured shapes with boxes, masks, keypoints and depth, every task.

See ``docs/demo_dataset.md``. Regenerate with
``python tools/misc/make_demo_data.py --out data/demo``.
"""

from .expressions import (
    caption_text,
    empty_expression,
    group_expressions,
    unique_expressions,
    vqa_pair,
)
from .generator import (
    ALL_DEMO_TASKS,
    DEFAULT_IMAGE_SIZES,
    GENERATOR_VERSION,
    encode_rle,
    ensure_demo_dataset,
    generate_demo_dataset,
)
from .references import (
    AUDIO_SAMPLE_RATE,
    REFERENCE_TASKS,
    exemplar_image,
    object_sound,
    read_wav,
    wav_bytes,
)
from .samples import DEMO_TASKS, PROMPT_TYPES, SAMPLE_BUILDERS, visual_prompt
from .scene import (
    COLOURS,
    DEPTH_SCALE,
    KEYPOINT_NAMES,
    SHAPES,
    SIZES,
    DemoObject,
    DemoScene,
    mask_geometry,
    sample_scene,
    shape_mask,
)

__all__ = [
    'ALL_DEMO_TASKS',
    'AUDIO_SAMPLE_RATE',
    'REFERENCE_TASKS',
    'exemplar_image',
    'object_sound',
    'read_wav',
    'wav_bytes',
    'COLOURS',
    'DEFAULT_IMAGE_SIZES',
    'DEMO_TASKS',
    'DEPTH_SCALE',
    'GENERATOR_VERSION',
    'KEYPOINT_NAMES',
    'PROMPT_TYPES',
    'SAMPLE_BUILDERS',
    'SHAPES',
    'SIZES',
    'DemoObject',
    'DemoScene',
    'caption_text',
    'empty_expression',
    'encode_rle',
    'ensure_demo_dataset',
    'generate_demo_dataset',
    'group_expressions',
    'mask_geometry',
    'sample_scene',
    'shape_mask',
    'unique_expressions',
    'visual_prompt',
    'vqa_pair',
]
