# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""The TRP language (DESIGN §3): builder, parser and helpers. See ``docs/trp.md``."""

from .api import parse_answer, parse_token_ids, strip_trp
from .builder import (
    COT_FALSE,
    COT_TRUE,
    MAX_DEPTH,
    answer_text,
    build_answer,
    cot_name,
    iter_groups,
    normalize_answer,
    phrase_text,
)
from .refs import FoundRef, find_refs, keep_units
from .structures import WARNING_CODES, CotEntry, CotInfo, ParseResult, ParseWarning, RefInfo

__all__ = [
    'build_answer',
    'parse_answer',
    'parse_token_ids',
    'strip_trp',
    'find_refs',
    'keep_units',
    'FoundRef',
    'answer_text',
    'normalize_answer',
    'iter_groups',
    'phrase_text',
    'cot_name',
    'ParseResult',
    'RefInfo',
    'ParseWarning',
    'CotInfo',
    'CotEntry',
    'WARNING_CODES',
    'COT_TRUE',
    'COT_FALSE',
    'MAX_DEPTH',
]
