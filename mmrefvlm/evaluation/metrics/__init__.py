# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""MMEngine metrics of mmrefvlm, all registered in ``mmrefvlm.registry.METRICS``."""

from .base import RefVLMBaseMetric, as_sample_dict, select_unit
from .caption_metric import CaptionMetric, meteor_score, score_captions, tokenize_captions
from .depth_metric import DepthMetric
from .gcg_metric import GCGMetric
from .gres_metric import GRESMetric
from .interactive_metric import InteractiveGroundingMetric
from .keypoint_metric import KeypointMetric
from .open_vocab_metric import OpenVocabMetric
from .rec_metric import RECMetric
from .res_metric import RESMetric
from .trp_metric import TRPParseMetric
from .vqa_metric import POPEMetric, VQAMetric

__all__ = [
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
]
