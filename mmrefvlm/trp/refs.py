# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""The ``<REF>`` tokens of a token sequence with their units, phrase groups and phrases.

Used by the data pipeline (once per sample, on the label ids: ``FormatConversation`` stores the
result as ``label_refs``), by ``RefVLM`` when a sample has none, and at inference on generated ids.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any

from .api import parse_token_ids
from .structures import ParseResult

#: One parsed ``<REF>``: ``(position, units, (answer, triplet, group), phrase, phrase_span)``.
FoundRef = tuple[
    int, tuple[str, ...], tuple[int, int | None, int | None], str, tuple[int, int] | None
]


def _as_list(values: Any) -> list:
    """A 1-D tensor / array / sequence as a list (one transfer for a tensor)."""
    return values.tolist() if hasattr(values, 'tolist') else list(values)


def find_refs(
    token_ids: Any,
    tokenizer: Any,
    *,
    known_units: Collection[str] | None,
    span_mask: Any = None,
) -> tuple[list[FoundRef], list[str], list[ParseResult]]:
    """Parse one sample's answer tokens into ``(position, units, group_key, phrase, span)`` tuples.

    Args:
        token_ids (Tensor | np.ndarray | Sequence[int]): (L,) the sample's sequence.
        tokenizer (RefTokenizer): For the special-token ids and unit-name text.
        known_units (Collection[str], optional): Units that have a decoder; others are dropped from
            a ref's units with a warning (a ref left without a unit is dropped). None: keep every
            valid unit name (the data pipeline, which does not know the model's decoders).
        span_mask (Tensor | np.ndarray | Sequence[bool], optional): (L,) which positions belong to
            answers (the labels mask in training). Consecutive answers are separated at EOS and
            parsed one by one. None: the whole sequence is one answer (generated tokens).

    Returns:
        tuple: refs as ``(position, units, (answer, triplet, group), phrase, phrase_span)``
        (``phrase_span``: sequence positions of ``<Phrase>`` and ``</Phrase>``, or None), warning
        strings, and the ``ParseResult`` of each answer.
    """
    every = _as_list(token_ids)
    if span_mask is None:
        pos: Sequence[int] = range(len(every))
    else:
        pos = [i for i, keep in enumerate(_as_list(span_mask)) if keep]
    ids = [every[i] for i in pos]
    eos = tokenizer.ids.eos
    out: list[FoundRef] = []
    warnings: list[str] = []
    results: list[ParseResult] = []
    start, answer = 0, 0
    for end in [i for i, t in enumerate(ids) if t == eos] + [len(ids)]:
        if end > start:
            res = parse_token_ids(ids[start:end], tokenizer, known_units=known_units)
            results.append(res)
            warnings += [f'{w.code}: {w.message}' for w in res.warnings]
            for ref in res.refs:
                if not ref.units:
                    warnings.append(f'dropped <REF> at token {pos[start + ref.position]}: no unit')
                    continue
                span = (
                    None
                    if ref.phrase_span is None
                    else (pos[start + ref.phrase_span[0]], pos[start + ref.phrase_span[1]])
                )
                key = (answer, ref.triplet, ref.group)
                out.append((pos[start + ref.position], ref.units, key, ref.phrase, span))
            answer += 1
        start = end + 1
    return out, warnings, results


def keep_units(refs: Sequence[FoundRef], known_units: Collection[str]) -> list[FoundRef]:
    """Refs parsed with ``known_units=None`` as if parsed with ``known_units``: units without a
    decoder are removed from each ref, and refs left without a unit are dropped (the refs and
    their order are those of :func:`find_refs` with ``known_units``; only warnings differ)."""
    out = []
    for position, units, key, phrase, span in refs:
        kept = tuple(u for u in units if u in known_units)
        if kept:
            out.append((position, kept, key, phrase, span))
    return out
