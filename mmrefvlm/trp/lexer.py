# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""Lexers: TRP text or token ids -> one event list for the parser.

An event is ``(kind, position, text)``: ``kind`` is one of the constants below, ``position``
a character offset (text) or a token index (ids), ``text`` the decoded span for ``TEXT`` events
and None otherwise. Adjacent text is always one event. ``<image>`` / ``[VPT]`` are dropped with
an ``unexpected_token`` warning; pad and BOS ids are skipped.
"""

from __future__ import annotations

import re
import weakref
from typing import Any

from mmrefvlm.tokenization.special_tokens import (
    IMAGE_TOKEN,
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

from .structures import ParseWarning

TEXT, PS, PE, US, UE, REF, TS, TE = range(8)
END = -1  # the kind the parser sees past the last event
_DROP, _SKIP = 100, 101

Event = tuple[int, int, 'str | None']

_KIND_OF_STRING = {
    PHRASE_START: PS,
    PHRASE_END: PE,
    UNIT_START: US,
    UNIT_END: UE,
    REF_TOKEN: REF,
    TASK_START: TS,
    TASK_END: TE,
    IMAGE_TOKEN: _DROP,
    VPT_TOKEN: _DROP,
}
_SPECIAL_RE = re.compile(
    '|'.join(re.escape(t) for t in sorted(TRP_SPECIAL_TOKENS, key=len, reverse=True))
)

#: Decoded-span cache size per tokenizer (entries; cleared when full).
DECODE_CACHE_SIZE = 1 << 16


def _push_text(events: list[Event], pos: int, text: str) -> None:
    if not text:
        return
    if events and events[-1][0] == TEXT:
        last = events[-1]
        assert last[2] is not None, 'TEXT events always carry their text'
        events[-1] = (TEXT, last[1], last[2] + text)
    else:
        events.append((TEXT, pos, text))


def _drop_warning(token: str, pos: int) -> ParseWarning:
    return ParseWarning('unexpected_token', f'{token} inside an answer was dropped', pos)


def lex_text(text: str) -> tuple[list[Event], list[ParseWarning]]:
    """Split TRP text into events (positions are character offsets)."""
    events: list[Event] = []
    warnings: list[ParseWarning] = []
    last = 0
    for m in _SPECIAL_RE.finditer(text):
        start = m.start()
        if start > last:
            _push_text(events, last, text[last:start])
        kind = _KIND_OF_STRING[m.group()]
        if kind == _DROP:
            warnings.append(_drop_warning(m.group(), start))
        else:
            events.append((kind, start, None))
        last = m.end()
    if last < len(text):
        _push_text(events, last, text[last:])
    return events, warnings


class TokenTables:
    """Per-tokenizer id -> kind table and a cache of decoded text spans.

    Args:
        tokenizer (RefTokenizer): Its ``ids`` (TokenIdMap) and ``decode`` are used.
    """

    def __init__(self, tokenizer: Any) -> None:
        ids = tokenizer.ids
        self.eos: int = ids.eos
        self.pad: int = ids.pad
        kind = {
            ids.phrase_start: PS,
            ids.phrase_end: PE,
            ids.unit_start: US,
            ids.unit_end: UE,
            ids.ref: REF,
            ids.task_start: TS,
            ids.task_end: TE,
            ids.image: _DROP,
            ids.vpt: _DROP,
            ids.pad: _SKIP,
        }
        if ids.bos is not None:
            kind[ids.bos] = _SKIP
        kind.pop(ids.eos, None)  # the caller splits at EOS before lexing
        self.kind = kind
        self.vocab_size = len(tokenizer)
        self.names = {ids.image: IMAGE_TOKEN, ids.vpt: VPT_TOKEN}
        # The Rust backend's decode is what ``PreTrainedTokenizerFast.decode`` calls (without the
        # Python wrapper: ~3x faster per span); other tokenizers use ``RefTokenizer.decode``.
        backend = getattr(getattr(tokenizer, 'hf', None), 'backend_tokenizer', None)
        if backend is not None:
            self._decode = lambda span: backend.decode(span, skip_special_tokens=False)
        else:
            self._decode = tokenizer.decode
        self._cache: dict[tuple[int, ...], str] = {}

    def span_text(self, span: list[int]) -> str:
        """Decoded text of a span of ordinary token ids (memoised); negative ids are skipped."""
        if min(span) < 0:
            span = [t for t in span if t >= 0]
            if not span:
                return ''
        chunk = tuple(span)
        s = self._cache.get(chunk)
        if s is None:
            if len(self._cache) >= DECODE_CACHE_SIZE:
                self._cache.clear()
            s = self._cache[chunk] = self._safe_decode(chunk)
        return s

    def _safe_decode(self, chunk: tuple[int, ...]) -> str:
        try:
            return self._decode(chunk)
        except (OverflowError, TypeError, ValueError, IndexError):
            # Ids outside the vocabulary (a model whose embedding rows were padded): dropped.
            valid = tuple(t for t in chunk if 0 <= t < self.vocab_size)
            try:
                return self._decode(valid) if valid else ''
            except (OverflowError, TypeError, ValueError, IndexError):
                return ''


_TABLES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def token_tables(tokenizer: Any) -> TokenTables:
    """The (cached) :class:`TokenTables` of a ``RefTokenizer``."""
    tables = _TABLES.get(tokenizer)
    if tables is None:
        if not hasattr(tokenizer, 'ids') or not hasattr(tokenizer, 'decode'):
            raise TypeError(
                'parse_token_ids needs a RefTokenizer (from '
                f'mmrefvlm.tokenization.build_tokenizer), got {type(tokenizer)!r}'
            )
        tables = _TABLES[tokenizer] = TokenTables(tokenizer)
    return tables


def lex_ids(
    seq: list[int], start: int, stop: int, tables: TokenTables
) -> tuple[list[Event], list[ParseWarning]]:
    """Split ``seq[start:stop]`` into events in one pass (positions are token indices).

    Runs of ordinary ids are decoded as one span each; negative ids (ignore index), pad and BOS
    are skipped without breaking a span; a dropped ``<image>`` / ``[VPT]`` ends a span (its
    neighbours are decoded apart, as in the decoded text, then joined).
    """
    events: list[Event] = []
    warnings: list[ParseWarning] = []
    kind_of = tables.kind
    # 1. Indices of the special ids (the only per-token Python work).
    marks = [i for i in range(start, stop) if seq[i] in kind_of]
    # 2. Walk the marks; the ordinary ids between them are sliced out, not visited.
    chunk: list[int] = []
    chunk_start = prev = start
    for i in marks:
        if i > prev:
            if not chunk:
                chunk_start = prev
            chunk.extend(seq[prev:i])
        prev = i + 1
        kind = kind_of[seq[i]]
        if kind == _SKIP:
            continue
        if chunk:  # a dropped token still ends the span (as it does in the decoded text)
            _push_text(events, chunk_start, tables.span_text(chunk))
            chunk = []
        if kind == _DROP:
            warnings.append(_drop_warning(tables.names[seq[i]], i))
        else:
            events.append((kind, i, None))
    if stop > prev:
        if not chunk:
            chunk_start = prev
        chunk.extend(seq[prev:stop])
    if chunk:
        _push_text(events, chunk_start, tables.span_text(chunk))
    return events, warnings
