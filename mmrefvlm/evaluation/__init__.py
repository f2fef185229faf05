# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""Evaluation: MMEngine metrics (``metrics``), their pure functions (``functional``) and the text
encoders used to compare phrases (``text_encoders``). Definitions: ``docs/metrics.md``."""

from . import functional
from .metrics import (
    CaptionMetric,
    DepthMetric,
    GCGMetric,
    GRESMetric,
    InteractiveGroundingMetric,
    KeypointMetric,
    OpenVocabMetric,
    POPEMetric,
    RECMetric,
    RefVLMBaseMetric,
    RESMetric,
    TRPParseMetric,
    VQAMetric,
    as_sample_dict,
    meteor_score,
    score_captions,
    select_unit,
    tokenize_captions,
)
from .text_encoders import (
    BagOfWordsTextEncoder,
    ExactMatchTextEncoder,
    MiniLMTextEncoder,
    build_text_encoder,
    text_similarity,
)

__all__ = [
    'functional',
    'RefVLMBaseMetric',
    'as_sample_dict',
    'select_unit',
    'RECMetric',
    'RESMetric',
    'GRESMetric',
    'OpenVocabMetric',
    'KeypointMetric',
    'DepthMetric',
    'CaptionMetric',
    'VQAMetric',
    'POPEMetric',
    'GCGMetric',
    'InteractiveGroundingMetric',
    'TRPParseMetric',
    'score_captions',
    'tokenize_captions',
    'meteor_score',
    'ExactMatchTextEncoder',
    'BagOfWordsTextEncoder',
    'MiniLMTextEncoder',
    'build_text_encoder',
    'text_similarity',
]
