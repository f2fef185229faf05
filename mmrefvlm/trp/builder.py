# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""Structured answer -> TRP string (DESIGN §3), and helpers over structured answers.

A structured answer is a list of segments; a segment is plain text (``str``) or a phrase group
``{'phrase': str | list[segment], 'groups': [{'units': [str, ...], 'n': int, ...}, ...]}``.
Extra keys (e.g. a group's ``'targets'``) are allowed and ignored by the builder.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from mmrefvlm.tokenization.special_tokens import (
    PAD_TOKEN,
    PHRASE_END,
    PHRASE_START,
    REF_TOKEN,
    TASK_END,
    TASK_START,
    TRP_SPECIAL_TOKENS,
    UNIT_END,
    UNIT_START,
)

#: First line of a VD-CoT block for answers without triplets / with triplets.
COT_FALSE = 'Unit decode (False).'
COT_TRUE = 'Unit decode (True). Class name, target unit and number:'
#: Deepest phrase nesting the builder accepts (the parser ignores deeper ``<Phrase>`` tags).
MAX_DEPTH = 32
#: Strings that text (phrases and plain segments) must not contain.
BANNED_IN_TEXT: tuple[str, ...] = TRP_SPECIAL_TOKENS + (PAD_TOKEN,)
#: A valid unit name: non-empty, no whitespace, commas, brackets or angle brackets.
UNIT_NAME_RE = re.compile(r'[^\s,\[\]()<>]+')


def _err(path: str, msg: str, value: Any) -> ValueError:
    return ValueError(f'invalid TRP answer at {path}: {msg} (got {value!r})')


def _check_text(text: Any, path: str) -> str:
    if not isinstance(text, str):
        raise _err(path, 'text must be a str', text)
    if '<' in text or '[' in text:  # cheap pre-check: every banned token has one of these
        for tok in BANNED_IN_TEXT:
            if tok in text:
                raise _err(path, f'text contains the special token {tok!r}', text)
    return text


def _canon_group(group: Any, path: str) -> dict[str, Any]:
    if not isinstance(group, Mapping):
        raise _err(path, 'a group must be a dict with "units" and "n"', group)
    units, n = group.get('units'), group.get('n')
    if isinstance(units, str) or not isinstance(units, Sequence) or not units:
        raise _err(f'{path}.units', 'units must be a non-empty list of unit names', units)
    for j, unit in enumerate(units):
        if not isinstance(unit, str) or not UNIT_NAME_RE.fullmatch(unit):
            raise _err(
                f'{path}.units[{j}]',
                'a unit name must be a non-empty str without whitespace, commas, brackets or <>',
                unit,
            )
    if len(set(units)) != len(units):
        raise _err(f'{path}.units', 'duplicate unit names', units)
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise _err(f'{path}.n', 'n must be an int >= 0', n)
    return {'units': list(units), 'n': n}


def _canon_phrase(seg: Mapping, path: str, depth: int) -> dict[str, Any]:
    if depth >= MAX_DEPTH:
        raise _err(path, f'phrases nested deeper than {MAX_DEPTH}', '...')
    if 'phrase' not in seg:
        raise _err(path, 'a phrase group needs a "phrase" key', dict(seg))
    phrase = seg['phrase']
    if isinstance(phrase, str):
        canon_phrase: str | list = _check_text(phrase, f'{path}.phrase')
    elif isinstance(phrase, (list, tuple)):
        inner = _canon_segments(phrase, f'{path}.phrase', depth + 1)
        canon_phrase = inner if any(not isinstance(s, str) for s in inner) else ''.join(inner)
    else:
        raise _err(f'{path}.phrase', 'phrase must be a str or a list of segments', phrase)
    groups = seg.get('groups', [])
    if groups is None:
        groups = []
    if isinstance(groups, (str, Mapping)) or not isinstance(groups, Sequence):
        raise _err(f'{path}.groups', 'groups must be a list of groups', groups)
    if depth == 0 and not groups:
        raise _err(
            f'{path}.groups',
            'a top-level phrase group needs at least one group (only nested phrases may have none)',
            groups,
        )
    return {
        'phrase': canon_phrase,
        'groups': [_canon_group(g, f'{path}.groups[{j}]') for j, g in enumerate(groups)],
    }


def _canon_segments(segments: Sequence, path: str, depth: int) -> list[Any]:
    out: list[Any] = []
    for i, seg in enumerate(segments):
        p = f'{path}[{i}]'
        if isinstance(seg, str):
            _check_text(seg, p)
            if not seg:
                continue
            if out and isinstance(out[-1], str):
                out[-1] += seg
            else:
                out.append(seg)
        elif isinstance(seg, Mapping):
            out.append(_canon_phrase(seg, p, depth))
        else:
            raise _err(p, 'a segment must be a str or a phrase-group dict', seg)
    return out


def normalize_answer(answer: str | Sequence[Any]) -> list[Any]:
    """Validate a structured answer and return its canonical form.

    Canonical: a list; no empty text segments and no two adjacent ones (they are merged);
    a phrase that holds no phrase group is a ``str``; every phrase group has exactly the keys
    ``phrase`` and ``groups`` (``[]`` for a nested phrase without groups); every group exactly
    ``units`` (a list) and ``n``. ``parse_answer(build_answer(x)).answer == normalize_answer(x)``.

    Args:
        answer (str | list): A plain-text answer or a list of segments.

    Returns:
        list: The canonical answer (new objects; the input is not modified).

    Raises:
        ValueError: Naming the path (``answer[1].groups[0].units[0]``) and value of the first
            invalid part.
    """
    if isinstance(answer, str):
        return [_check_text(answer, 'answer')] if answer else []
    if not isinstance(answer, (list, tuple)):
        raise _err('answer', 'an answer must be a str or a list of segments', answer)
    return _canon_segments(answer, 'answer', 0)


def _plain(phrase: str | list) -> str:
    if isinstance(phrase, str):
        return phrase
    return ''.join(s if isinstance(s, str) else _plain(s['phrase']) for s in phrase)


def cot_name(phrase_text: str) -> str:
    """The VD-CoT ``Name`` of a phrase: its plain text with whitespace runs collapsed."""
    return ' '.join(phrase_text.split())


def _render(segments: list, out: list[str], cot: list[str]) -> None:
    for seg in segments:
        if isinstance(seg, str):
            out.append(seg)
            continue
        phrase = seg['phrase']
        out.append(PHRASE_START)
        if isinstance(phrase, str):
            out.append(phrase)
        else:
            _render(phrase, out, cot)
        out.append(PHRASE_END)
        if not seg['groups']:
            continue
        name = cot_name(_plain(phrase))
        parts = []
        for group in seg['groups']:
            units = ','.join(group['units'])
            refs = ''.join(f'[{k}]{REF_TOKEN}' for k in range(group['n']))
            parts.append(f'{UNIT_START}{units}{UNIT_END}{refs}')
            cot.append(f'- Name: {name} Unit: {units} Num: {group["n"]}\n')
        out.append('(' + ', '.join(parts) + ')')


def build_answer(answer: str | Sequence[Any], cot: bool = False) -> str:
    """Render a structured answer as a TRP string.

    Triplets render as ``<Phrase>P</Phrase>(<Unit>u1,u2</Unit>[0]<REF>[1]<REF>, <Unit>v</Unit>)``:
    groups are joined by ``", "``, units of a group by ``","``, and group ``j`` has ``n`` refs
    ``[0]<REF> .. [n-1]<REF>`` (``n = 0``: explicit "no such object").

    Args:
        answer (str | list): Plain text or a list of segments (see module docstring).
        cot (bool): Prepend the VD-CoT block: ``Unit decode (True)...`` with one
            ``- Name: NAME Unit: U Num: N`` line per (triplet, group) in render order when the
            answer has any phrase group with groups, else ``Unit decode (False).``.

    Returns:
        str: The rendered answer.

    Raises:
        ValueError: The answer is invalid (see :func:`normalize_answer`).
    """
    segments = normalize_answer(answer)
    out: list[str] = []
    lines: list[str] = []
    _render(segments, out, lines)
    body = ''.join(out)
    if not cot:
        return body
    if lines:
        return f'{TASK_START}\n{COT_TRUE}\n{"".join(lines)}{TASK_END}\n{body}'
    return f'{TASK_START}\n{COT_FALSE}\n{TASK_END}\n{body}'


def answer_text(answer: str | Sequence[Any]) -> str:
    """Plain text of a structured answer: text and phrase text, without tags or groups.

    Raises:
        ValueError: The answer is invalid.
    """
    return _plain(normalize_answer(answer))


def _walk_groups(segments: Sequence, counter: list[int]) -> Iterator[tuple[int, int, Any, Any]]:
    for seg in segments:
        if isinstance(seg, str):
            continue
        if not isinstance(seg['phrase'], str):
            yield from _walk_groups(seg['phrase'], counter)
        groups = seg.get('groups') or []
        if groups:
            tid = counter[0]
            counter[0] += 1
            for gi, group in enumerate(groups):
                yield tid, gi, seg, group


def iter_groups(answer: str | Sequence[Any]) -> Iterator[tuple[int, int, Any, Any]]:
    """Iterate over the groups of an answer in render order (the order of their ``<REF>`` s).

    A triplet (phrase group with groups) renders its ``(...)`` after its phrase, so nested
    triplets come before the triplet that contains them. The indices are those of
    :attr:`RefInfo.triplet` / :attr:`RefInfo.group`, so a data pipeline can align each
    ``<REF>`` with ``group['targets'][k]``.

    Args:
        answer (str | list): A valid structured answer (extra keys are kept).

    Yields:
        tuple: ``(triplet_index, group_index, phrase_group, group)``, where ``phrase_group`` and
        ``group`` are the caller's own objects (with their extra keys).

    Raises:
        ValueError: The answer is invalid (checked before the first item is yielded).
    """
    normalize_answer(answer)
    if isinstance(answer, str):
        return iter(())
    return _walk_groups(answer, [0])


def phrase_text(phrase_group: Mapping[str, Any]) -> str:
    """Plain text of a phrase group's phrase (nested tags removed)."""
    return _plain(phrase_group['phrase'])
