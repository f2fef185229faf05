# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""Public parsing entry points: text, token ids, and plain-text stripping."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import replace
from typing import Any

from .builder import _plain
from .lexer import TokenTables, lex_ids, lex_text, token_tables
from .parser import TRPParser, _append_text
from .structures import CotInfo, ParseResult


def _known(known_units: Collection[str] | None) -> frozenset[str] | None:
    if known_units is None:
        return None
    if isinstance(known_units, str):
        raise TypeError(f'known_units must be a collection of unit names, got {known_units!r}')
    return frozenset(known_units)


def parse_answer(text: str, known_units: Collection[str] | None = None) -> ParseResult:
    """Parse a TRP answer string. Never raises on malformed text.

    Args:
        text (str): The answer (a leading VD-CoT block is read into ``.cot``).
        known_units (Collection[str] | None): Unit names the model can decode. Names outside it
            give ``unknown_unit`` warnings; they stay in ``.answer`` but are left out of
            ``RefInfo.units``. None (default) routes every valid name.

    Returns:
        ParseResult: ``.answer`` (canonical structured answer), ``.refs`` (one per ``<REF>``,
        ``position`` = character offset of the ``<REF>``), ``.cot`` and ``.warnings``.

    Raises:
        TypeError: ``text`` is not a str.
    """
    if not isinstance(text, str):
        raise TypeError(f'parse_answer expects a str, got {type(text)!r}')
    events, warnings = lex_text(text)
    return TRPParser(events, _known(known_units), warnings, len(text)).run()


def _as_list(ids: Any) -> list[int]:
    if isinstance(ids, list):
        if not ids or type(ids[0]) is int:
            return ids
        return [int(t) for t in ids]
    if hasattr(ids, 'tolist') and hasattr(ids, 'ndim'):  # torch.Tensor / np.ndarray
        if ids.ndim != 1:
            raise ValueError(f'ids must be 1-D, got shape {tuple(ids.shape)}')
        if getattr(ids, 'is_floating_point', lambda: ids.dtype.kind == 'f')():
            raise TypeError(f'ids must be integers, got dtype {ids.dtype}')
        return ids.tolist()
    if isinstance(ids, (tuple, range)):
        return [int(t) for t in ids]
    raise TypeError(f'ids must be a list, tuple or 1-D tensor of ints, got {type(ids)!r}')


def _spans(seq: list[int], tables: TokenTables, stop_at_eos: bool) -> list[tuple[int, int]]:
    n, eos = len(seq), tables.eos
    if stop_at_eos:
        start = 0
        if tables.pad == eos:  # pad == eos: leading pads are not the end of the answer
            while start < n and seq[start] == eos:
                start += 1
        try:
            stop = seq.index(eos, start)
        except ValueError:
            stop = n
        return [(start, stop)]
    spans, start = [], 0
    for i, t in enumerate(seq):
        if t == eos or t < 0:
            if start < i:
                spans.append((start, i))
            start = i + 1
    if start < n:
        spans.append((start, n))
    return spans


def _merge(results: list[ParseResult]) -> ParseResult:
    merged = ParseResult()
    offset = 0
    cots: list[CotInfo] = []
    for res in results:
        for seg in res.answer:
            if isinstance(seg, str):
                _append_text(merged.answer, seg)
            else:
                merged.answer.append(seg)
        merged.refs.extend(
            ref if ref.triplet is None else replace(ref, triplet=ref.triplet + offset)
            for ref in res.refs
        )
        merged.warnings.extend(res.warnings)
        if res.cot is not None:
            cots.append(res.cot)
        offset += _count_triplets(res.answer)
    if cots:
        merged.cot = CotInfo(
            decode=any(c.decode for c in cots), entries=tuple(e for c in cots for e in c.entries)
        )
    return merged


def _count_triplets(segments: list) -> int:
    count = 0
    for seg in segments:
        if not isinstance(seg, str):
            if not isinstance(seg['phrase'], str):
                count += _count_triplets(seg['phrase'])
            count += bool(seg['groups'])
    return count


def parse_token_ids(
    ids: Sequence[int] | Any,
    tokenizer: Any,
    known_units: Collection[str] | None = None,
    *,
    stop_at_eos: bool = True,
) -> ParseResult:
    """Parse generated or label token ids in one pass driven by the special-token ids.

    Only runs of ordinary ids between special tokens are decoded (each once, memoised per
    tokenizer), so every ``RefInfo.position`` is the token index of that ``<REF>`` in ``ids``.

    Args:
        ids (list[int] | Tensor): 1-D token ids, e.g. generated ids or a sample's label ids.
            Negative ids (the -100 ignore index), pad and BOS are skipped.
        tokenizer (RefTokenizer): From :func:`mmrefvlm.tokenization.build_tokenizer`.
        known_units (Collection[str] | None): As in :func:`parse_answer`.
        stop_at_eos (bool): True (default): the first EOS ends the answer (later ids are
            ignored). False: for multi-turn label ids, EOS and ignore-index runs separate
            answers; each is parsed on its own and the results are concatenated (``.answer``
            segments, ``.refs`` with triplet indices offset to index the concatenated answer,
            ``.cot`` entries of all turns).

    Returns:
        ParseResult: As :func:`parse_answer`, with token indices as positions.

    Raises:
        TypeError: ``tokenizer`` is not a ``RefTokenizer`` or ``ids`` is not integer.
        ValueError: ``ids`` is a tensor that is not 1-D.
    """
    seq = _as_list(ids)
    tables = token_tables(tokenizer)
    known = _known(known_units)
    results = []
    for start, stop in _spans(seq, tables, stop_at_eos):
        events, warnings = lex_ids(seq, start, stop, tables)
        results.append(TRPParser(events, known, warnings, stop).run())
    if len(results) == 1:
        return results[0]
    return _merge(results)


def strip_trp(text: str) -> str:
    """Plain caption text of a TRP answer: CoT block, tags and ``(...)`` group lists removed.

    ``strip_trp('<Phrase>A man</Phrase>(<Unit>box</Unit>[0]<REF>) rides.') == 'A man rides.'``
    Malformed input is recovered as :func:`parse_answer` does.
    """
    return _plain(parse_answer(text).answer)
