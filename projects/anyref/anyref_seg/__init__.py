# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""AnyRef (He et al., CVPR 2024): an ``<obj>`` token refocused on its answer, and references
given as a box, another image or a sound.

Importing registers ``AnyRefMaskDecoder``, ``VisualReferenceEncoder``, ``AudioReferenceEncoder``,
``SpectrogramAudioEncoder``, ``SpectrogramViTAudioEncoder`` (``MODELS``), ``AnyRefConversation``,
``PackAnyRefInputs`` (``TRANSFORMS``), ``RefocusRefiner``, ``ObjAnswerFormat`` (``TASK_UTILS``),
``AVSMetric`` and ``AnyRefCaptionMetric`` (``METRICS``).
"""

from .audio import SpectrogramAudioEncoder, SpectrogramViTAudioEncoder, mel_filterbank
from .decoder import AnyRefMaskDecoder
from .encoders import AudioReferenceEncoder, VisualReferenceEncoder
from .metrics import AnyRefCaptionMetric, AVSMetric
from .refocus import LastLayerCapture, RefocusRefiner
from .roi_align import bilinear_at, pool_grid, roi_align
from .transforms import (
    ANYREF_TOKENS,
    AnyRefConversation,
    ObjAnswerFormat,
    PackAnyRefInputs,
    audio_ref_text,
    visual_ref_text,
)

__all__ = [
    'ANYREF_TOKENS',
    'AVSMetric',
    'AnyRefCaptionMetric',
    'AnyRefConversation',
    'AnyRefMaskDecoder',
    'AudioReferenceEncoder',
    'LastLayerCapture',
    'ObjAnswerFormat',
    'PackAnyRefInputs',
    'RefocusRefiner',
    'SpectrogramAudioEncoder',
    'SpectrogramViTAudioEncoder',
    'VisualReferenceEncoder',
    'audio_ref_text',
    'bilinear_at',
    'mel_filterbank',
    'pool_grid',
    'roi_align',
    'visual_ref_text',
]
