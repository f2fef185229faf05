# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""Tokenizer factory and the TRP special tokens (DESIGN §3)."""

from .builder import RefTokenizer, add_special_tokens, build_tokenizer
from .special_tokens import (
    IMAGE_TOKEN,
    PAD_TOKEN,
    PHRASE_END,
    PHRASE_START,
    REF_TOKEN,
    TASK_END,
    TASK_START,
    TRP_SPECIAL_TOKENS,
    UNIT_END,
    UNIT_START,
    VPT_TOKEN,
)
from .token_ids import TokenIdMap

__all__ = [
    'RefTokenizer',
    'TokenIdMap',
    'build_tokenizer',
    'add_special_tokens',
    'TRP_SPECIAL_TOKENS',
    'IMAGE_TOKEN',
    'VPT_TOKEN',
    'REF_TOKEN',
    'PHRASE_START',
    'PHRASE_END',
    'UNIT_START',
    'UNIT_END',
    'TASK_START',
    'TASK_END',
    'PAD_TOKEN',
]
