# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""Result types of the TRP parser (small frozen dataclasses, no tensors)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

#: Stable warning codes (``ParseWarning.code``). Documented in ``docs/trp.md``.
WARNING_CODES: tuple[str, ...] = (
    'unclosed_phrase',  # a <Phrase> never closed (its content is kept)
    'stray_tag',  # </Phrase>, </Unit> or </Task> without its opening tag (ignored)
    'phrase_without_groups',  # a top-level phrase with no "(...)" part (unwrapped to text)
    'ref_outside_group',  # <REF> that belongs to no <Unit> group (returned with units=())
    'orphan_group',  # <Unit> group without a phrase (kept under an empty phrase)
    'missing_paren',  # a group list without its "(" (parsed anyway)
    'unclosed_group',  # a group list without its ")" (closed where the next tag starts)
    'malformed_group',  # unexpected text inside a group list (dropped)
    'unclosed_unit',  # <Unit> without </Unit> (unit names read up to the first bracket)
    'empty_unit',  # an empty unit name (dropped; a group left with none is dropped)
    'invalid_unit',  # a unit name with whitespace/brackets/<> (dropped)
    'unknown_unit',  # a unit name not in ``known_units`` (kept in .answer, not routed)
    'index_mismatch',  # "[k]" before a <REF> missing, unreadable or not its 0-based rank
    'repetition',  # runaway repetition (a huge group, or the same triplet many times)
    'too_deep',  # phrases nested deeper than MAX_DEPTH (the extra tags are ignored)
    'unexpected_token',  # <image> / [VPT] inside an answer (dropped)
    'misplaced_cot',  # a <Task> block not at the start of the answer
    'unclosed_task',  # <Task> without </Task>
    'cot_malformed',  # a CoT line that does not follow the VD-CoT format
    'cot_mismatch',  # the CoT's name/unit/num lines disagree with the triplets
    'truncated',  # the input ends inside a phrase, group, unit or CoT block
)


@dataclass(frozen=True)
class RefInfo:
    """One ``<REF>`` token of a parsed answer.

    Args:
        position (int): Character offset of ``<REF>`` in the text (:func:`parse_answer`) or its
            token index in ``ids`` (:func:`parse_token_ids`).
        units (tuple[str, ...]): The units this ``<REF>`` is routed to, in written order. Empty
            when the ``<REF>`` is outside any group, its group has no valid unit name, or every
            unit is unknown: the router must drop such refs.
        triplet (int | None): Index of its triplet (a phrase group that has groups) in render
            order, the order of the triplets' ``(...)`` parts in the text, which is also the
            order of :func:`iter_groups` over ``ParseResult.answer``. None when not in ``.answer``.
        group (int | None): Index of its group within the triplet's ``groups``. None likewise.
        k (int | None): 0-based rank of this ``<REF>`` within its group (the written ``[k]`` is
            checked against it). None when ``group`` is None.
        phrase (str): Plain text of the triplet's phrase ('' when there is none).
        phrase_span (tuple[int, int] | None): Positions (characters or token indices, as
            ``position``) of the triplet's ``<Phrase>`` and ``</Phrase>``; its content lies strictly
            between them. None when the phrase was never closed.
    """

    position: int
    units: tuple[str, ...]
    triplet: int | None
    group: int | None
    k: int | None
    phrase: str = ''
    phrase_span: tuple[int, int] | None = None


@dataclass(frozen=True)
class ParseWarning:
    """A problem the parser recovered from.

    Args:
        code (str): One of :data:`WARNING_CODES`.
        message (str): Human-readable detail.
        position (int): Character offset (text input) or token index (token input) where it was
            noticed; for problems inside a text span, the start of that span.
    """

    code: str
    message: str
    position: int


@dataclass(frozen=True)
class CotEntry:
    """One ``- Name: NAME Unit: UNIT Num: N`` line of a VD-CoT block."""

    name: str
    units: tuple[str, ...]
    num: int


@dataclass(frozen=True)
class CotInfo:
    """The parsed VD-CoT block.

    Args:
        decode (bool): The declared ``Unit decode (True|False)`` flag.
        entries (tuple[CotEntry, ...]): The declared lines (empty when ``decode`` is False).
    """

    decode: bool
    entries: tuple[CotEntry, ...] = ()


@dataclass
class ParseResult:
    """What the parser recovered from one answer.

    Args:
        answer (list): The structured answer (same schema as :func:`build_answer` input, in
            canonical form, without extra keys); always buildable by :func:`build_answer`.
        refs (list[RefInfo]): One entry per ``<REF>`` token, in text order.
        cot (CotInfo | None): The VD-CoT block, or None when the answer has none.
        warnings (list[ParseWarning]): Problems recovered from, in the order they were met.
    """

    answer: list[Any] = field(default_factory=list)
    refs: list[RefInfo] = field(default_factory=list)
    cot: CotInfo | None = None
    warnings: list[ParseWarning] = field(default_factory=list)

    @property
    def warning_codes(self) -> list[str]:
        """Codes of ``warnings``, in order."""
        return [w.code for w in self.warnings]
