# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""Reading a VD-CoT block and checking it against the triplets of the answer."""

from __future__ import annotations

import re

from .builder import cot_name
from .structures import CotEntry, CotInfo, ParseWarning

_FLAG_RE = re.compile(r'Unit decode \((True|False)\)')
# Greedy name: a name may contain " Unit: ", units and the number contain no spaces.
_LINE_RE = re.compile(r'-\s*Name:\s?(.*)\sUnit:\s*(\S+)\s+Num:\s*(\d{1,9})')


def parse_cot(content: str, pos: int) -> tuple[CotInfo, list[ParseWarning]]:
    """Parse the text between ``<Task>`` and ``</Task>``.

    Args:
        content (str): The block's text.
        pos (int): Position of ``<Task>`` (for warnings).

    Returns:
        tuple: The :class:`CotInfo` and the ``cot_malformed`` warnings. A missing flag line makes
        ``decode`` True exactly when some entry was read.
    """
    warnings: list[ParseWarning] = []
    lines = [line.strip() for line in content.split('\n')]
    lines = [line for line in lines if line]
    flag: bool | None = None
    if lines:
        m = _FLAG_RE.match(lines[0])
        if m is not None:
            flag = m.group(1) == 'True'
            lines = lines[1:]
    if flag is None:
        warnings.append(ParseWarning('cot_malformed', 'CoT block without "Unit decode (...)"', pos))
    entries = []
    for line in lines:
        m = _LINE_RE.fullmatch(line)
        if m is None:
            warnings.append(
                ParseWarning('cot_malformed', f'unreadable CoT line {line[:80]!r}', pos)
            )
            continue
        entries.append(
            CotEntry(
                name=cot_name(m.group(1)), units=tuple(m.group(2).split(',')), num=int(m.group(3))
            )
        )
    decode = flag if flag is not None else bool(entries)
    return CotInfo(decode=decode, entries=tuple(entries)), warnings


def check_cot(
    cot: CotInfo, body: list[tuple[str, tuple[str, ...], int]], pos: int
) -> ParseWarning | None:
    """A ``cot_mismatch`` warning when the CoT disagrees with the parsed triplets.

    Args:
        cot (CotInfo): The declared block.
        body (list): ``(cot_name(phrase), units, n)`` per (triplet, group) in render order.
        pos (int): Position of ``<Task>``.
    """
    if not cot.decode:
        if body:
            return ParseWarning(
                'cot_mismatch',
                f'CoT says "Unit decode (False)" but the answer has {len(body)} group(s)',
                pos,
            )
        return None
    declared = [(e.name, e.units, e.num) for e in cot.entries]
    if declared == body:
        return None
    for i, (a, b) in enumerate(zip(declared, body, strict=False)):
        if a != b:
            return ParseWarning(
                'cot_mismatch', f'CoT line {i} declares {a} but the answer has {b}', pos
            )
    return ParseWarning(
        'cot_mismatch',
        f'CoT declares {len(declared)} line(s), the answer has {len(body)} group(s)',
        pos,
    )
