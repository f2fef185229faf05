# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""The TRP special tokens (DESIGN §3). The tokenizer factory is the only place that adds them."""

from __future__ import annotations

IMAGE_TOKEN = '<image>'
VPT_TOKEN = '[VPT]'
REF_TOKEN = '<REF>'
PHRASE_START = '<Phrase>'
PHRASE_END = '</Phrase>'
UNIT_START = '<Unit>'
UNIT_END = '</Unit>'
TASK_START = '<Task>'
TASK_END = '</Task>'
PAD_TOKEN = '[PAD]'

#: Tokens every mmrefvlm tokenizer has, in the order they are added (ids follow this order when the
#: base tokenizer has none of them).
TRP_SPECIAL_TOKENS: tuple[str, ...] = (
    IMAGE_TOKEN,
    VPT_TOKEN,
    REF_TOKEN,
    PHRASE_START,
    PHRASE_END,
    UNIT_START,
    UNIT_END,
    TASK_START,
    TASK_END,
)

#: Attribute name of each TRP token on :class:`~mmrefvlm.tokenization.TokenIdMap`.
TOKEN_ATTRS: dict[str, str] = {
    IMAGE_TOKEN: 'image',
    VPT_TOKEN: 'vpt',
    REF_TOKEN: 'ref',
    PHRASE_START: 'phrase_start',
    PHRASE_END: 'phrase_end',
    UNIT_START: 'unit_start',
    UNIT_END: 'unit_end',
    TASK_START: 'task_start',
    TASK_END: 'task_end',
}
