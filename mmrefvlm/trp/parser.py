# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""TRP parser: text or token ids -> structured answer, ``<REF>`` infos and warnings.

One pass over the lexer's events with an explicit phrase stack; it never raises on model output.
The recovery policy is documented in ``docs/trp.md``.
"""

from __future__ import annotations

import re
from collections.abc import Collection

from .builder import BANNED_IN_TEXT, MAX_DEPTH, UNIT_NAME_RE, _plain, cot_name
from .cot import check_cot, parse_cot
from .lexer import END, PE, PS, REF, TE, TEXT, TS, UE, US, Event
from .structures import CotInfo, ParseResult, ParseWarning, RefInfo

#: A group with more ``<REF>`` than this gets a ``repetition`` warning (all refs are kept).
MAX_GROUP_REFS = 100
#: This many identical consecutive triplets get a ``repetition`` warning.
REPEAT_TRIPLETS = 8

_INDEX_RE = re.compile(r'\[\s*(\d{1,9})\s*\]')
_TRAILING_INDEX_RE = re.compile(r'\[\s*\d{1,9}\s*\]\s*\Z')
_UNIT_PREFIX_RE = re.compile(r'[^\[\]()<>]*')


def _append_text(segs: list, text: str) -> None:
    if text:
        if segs and isinstance(segs[-1], str):
            segs[-1] += text
        else:
            segs.append(text)


class _Group:
    __slots__ = ('units', 'routable', 'refs', 'tid', 'gi', 'phrase', 'span', 'bad_index')

    def __init__(self, units: list[str], routable: tuple[str, ...]) -> None:
        self.units = units
        self.routable = routable
        self.refs: list[int] = []
        self.tid: int | None = None
        self.gi: int | None = None
        self.phrase = ''
        self.span: tuple[int, int] | None = None
        self.bad_index = False


class _Node:
    __slots__ = ('segs', 'groups', 'pos', 'end')

    def __init__(self, pos: int) -> None:
        self.segs: list = []
        self.groups: list[_Group] = []
        self.pos = pos
        self.end: int | None = None  # position of its </Phrase>


class TRPParser:
    """Parse one answer's events (use :func:`parse_answer` / :func:`parse_token_ids`).

    Args:
        events (list[Event]): From :func:`lex_text` or :func:`lex_ids`.
        known_units (Collection[str] | None): Routable unit names; None accepts every valid name.
        warnings (list[ParseWarning]): The lexer's warnings (extended in place).
        end_pos (int): Position just past the input (for end-of-input warnings).
    """

    def __init__(
        self,
        events: list[Event],
        known_units: Collection[str] | None,
        warnings: list[ParseWarning],
        end_pos: int,
    ) -> None:
        self.ev = events
        self.n = len(events)
        self.i = 0
        # a set: membership tests stay O(1) whatever collection the caller passed
        self.known = None if known_units is None else frozenset(known_units)
        self.warnings = warnings
        self.end_pos = end_pos
        self.root: list = []
        self.stack: list[_Node] = []
        self.ignored = 0
        self.refs: list[tuple[int, _Group | None, int]] = []
        self.cot: CotInfo | None = None
        self.cot_pos = 0
        self.truncated = False

    # ----------------------------------------------------------------- helpers
    def _warn(self, code: str, message: str, pos: int) -> None:
        self.warnings.append(ParseWarning(code, message, pos))

    def _truncated(self, what: str) -> None:
        if not self.truncated:
            self.truncated = True
            self._warn('truncated', f'the input ends inside {what}', self.end_pos)

    def _kind(self, j: int) -> int:
        return self.ev[j][0] if j < self.n else END

    def _pos(self) -> int:
        return self.ev[self.i][1] if self.i < self.n else self.end_pos

    def _segs(self) -> list:
        return self.stack[-1].segs if self.stack else self.root

    def _text(self, j: int) -> str:
        """The text of event ``j``, which must be a ``TEXT`` event (those always carry a str)."""
        text = self.ev[j][2]
        assert text is not None, 'TEXT events always carry their text'
        return text

    # ----------------------------------------------------------------- main loop
    def run(self) -> ParseResult:
        """Parse all events and return the result."""
        if self._kind(0) == TEXT and not self._text(0).strip() and self._kind(1) == TS:
            self.i = 1  # whitespace before a leading CoT block is dropped
        if self._kind(self.i) == TS:
            self._read_cot()
        while self.i < self.n:
            kind, pos, text = self.ev[self.i]
            if kind == TEXT:
                assert text is not None, 'TEXT events always carry their text'
                _append_text(self._segs(), text)
                self.i += 1
            elif kind == PS:
                self._open()
            elif kind == PE:
                self._close()
            elif kind == US:
                self._orphan(pos)
            elif kind == REF:
                self._stray_ref(pos)
            elif kind == TS:
                self._warn('misplaced_cot', '<Task> block not at the start of the answer', pos)
                self._read_cot()
            else:  # UE or TE without its opening tag
                self._warn('stray_tag', f'{"</Unit>" if kind == UE else "</Task>"} ignored', pos)
                self.i += 1
        self._finish()
        return self._result()

    def _read_cot(self) -> None:
        pos = self.ev[self.i][1]
        self.i += 1
        content = ''
        if self._kind(self.i) == TEXT:
            content = self._text(self.i)
            self.i += 1
        kind = self._kind(self.i)
        if kind == TE:
            self.i += 1
            if self._kind(self.i) == TEXT and self._text(self.i).startswith('\n'):
                p, text = self.ev[self.i][1], self._text(self.i)
                self.ev[self.i] = (TEXT, p, text[1:])  # the block's own closing newline
        elif kind == END:
            self._truncated('the <Task> block')
        else:
            self._warn('unclosed_task', '<Task> without </Task>', pos)
        if self.cot is None:
            self.cot, cot_warnings = parse_cot(content, pos)
            self.cot_pos = pos
            self.warnings.extend(cot_warnings)

    def _open(self) -> None:
        pos = self.ev[self.i][1]
        self.i += 1
        if self.ignored or len(self.stack) >= MAX_DEPTH:
            if not self.ignored:
                self._warn('too_deep', f'phrases nested deeper than {MAX_DEPTH}', pos)
            self.ignored += 1
            return
        self.stack.append(_Node(pos))

    def _close(self) -> None:
        pos = self.ev[self.i][1]
        self.i += 1
        if self.ignored:
            self.ignored -= 1
            return
        if not self.stack:
            self._warn('stray_tag', '</Phrase> without <Phrase> ignored', pos)
            return
        node = self.stack.pop()
        node.end = pos
        trailing = self._after_phrase(node)
        self._attach(node)
        _append_text(self._segs(), trailing)

    def _after_phrase(self, node: _Node) -> str:
        """Parse the ``(...)`` part after ``</Phrase>`` if there is one; return text after it."""
        kind = self._kind(self.i)
        if kind == TEXT and self._text(self.i).strip() == '(':
            nxt = self._kind(self.i + 1)
            if nxt == US:
                self.i += 1
                return self._group_list(node)
            if nxt == END:
                self.i += 1
                self._truncated('a group list')
        elif kind == US:
            self._warn('missing_paren', 'group list without "("', self._pos())
            return self._group_list(node)
        return ''

    def _attach(self, node: _Node, warn: bool = True) -> None:
        node.groups = [g for g in node.groups if g.units]
        segs = self._segs()
        if node.groups or self.stack:
            segs.append(node)
            return
        if warn:
            self._warn(
                'phrase_without_groups',
                'top-level phrase without "(<Unit>...)" kept as text',
                node.pos,
            )
        self._splice(segs, node)

    def _splice(self, segs: list, node: _Node) -> None:
        for seg in node.segs:
            if isinstance(seg, str):
                _append_text(segs, seg)
            elif seg.groups:
                segs.append(seg)
            else:
                self._splice(segs, seg)

    # ----------------------------------------------------------------- groups
    def _group_list(self, node: _Node) -> str:
        """Parse groups from the ``<Unit>`` at ``self.i``; return the text after ``)``."""
        while True:
            group, rest = self._read_unit()
            node.groups.append(group)
            while True:
                if rest is not None:
                    text, rest = rest, None
                elif self._kind(self.i) == TEXT:
                    text = self._text(self.i)
                    self.i += 1
                else:
                    text = ''
                close = text.find(')')
                if close >= 0:
                    if text[:close].strip():
                        self._warn(
                            'malformed_group',
                            f'text {text[:close][:40]!r} before ")" dropped',
                            self._pos(),
                        )
                    self._check_size(group)
                    return text[close + 1 :]
                kind = self._kind(self.i)
                if kind == REF:
                    self._group_ref(group, text)
                    continue
                self._check_size(group)
                if kind == US:
                    if text.strip() != ',':
                        self._warn(
                            'malformed_group',
                            f'expected "," between groups, got {text[:40]!r}',
                            self._pos(),
                        )
                    break
                if kind == END:
                    self._truncated('a group list')
                else:
                    self._warn('unclosed_group', 'group list without ")"', self._pos())
                s = text.strip()
                return '' if not s or s == ',' or _INDEX_RE.fullmatch(s) else text

    def _read_unit(self) -> tuple[_Group, str | None]:
        pos = self.ev[self.i][1]
        self.i += 1
        text = ''
        if self._kind(self.i) == TEXT:
            text = self._text(self.i)
            self.i += 1
        if self._kind(self.i) == UE:
            self.i += 1
            return self._make_group(text, pos), None
        if self._kind(self.i) == END:  # the name may be cut: the group is dropped
            self._truncated('<Unit>')
            return _Group([], ()), ''
        self._warn('unclosed_unit', '<Unit> without </Unit>', pos)
        prefix = _UNIT_PREFIX_RE.match(text)
        assert prefix is not None  # the pattern matches the empty string, so never fails
        names = prefix.group()
        return self._make_group(names, pos), text[len(names) :]

    def _make_group(self, text: str, pos: int) -> _Group:
        units: list[str] = []
        seen: set[str] = set()  # duplicate test in O(1): linear in the number of names
        routable: list[str] = []
        warned: set[str] = set()

        def warn_once(code: str, message: str) -> None:
            if code not in warned:
                warned.add(code)
                self._warn(code, message, pos)

        for raw in text.split(','):
            name = raw.strip()
            if not name:
                warn_once('empty_unit', f'empty unit name in {text[:40]!r}')
            elif not UNIT_NAME_RE.fullmatch(name) or name in seen:
                warn_once('invalid_unit', f'invalid or duplicate unit name {name[:40]!r}')
            else:
                units.append(name)
                seen.add(name)
                if self.known is not None and name not in self.known:
                    warn_once('unknown_unit', f'unit {name[:40]!r} is not a known unit')
                else:
                    routable.append(name)
        return _Group(units, tuple(routable))

    def _group_ref(self, group: _Group, text: str) -> None:
        k = len(group.refs)
        pos = self.ev[self.i][1]
        self.i += 1
        m = _INDEX_RE.fullmatch(text.strip())
        if (m is None or int(m.group(1)) != k) and not group.bad_index:
            group.bad_index = True
            self._warn('index_mismatch', f'expected "[{k}]" before <REF>, got {text[:20]!r}', pos)
        group.refs.append(pos)
        self.refs.append((pos, group, k))

    def _check_size(self, group: _Group) -> None:
        if len(group.refs) > MAX_GROUP_REFS:
            self._warn(
                'repetition',
                f'a group with {len(group.refs)} <REF> (more than {MAX_GROUP_REFS})',
                group.refs[MAX_GROUP_REFS],
            )

    def _orphan(self, pos: int) -> None:
        self._warn('orphan_group', '<Unit> group without a phrase (kept under phrase "")', pos)
        segs = self._segs()
        if segs and isinstance(segs[-1], str) and segs[-1].rstrip().endswith('('):
            head = segs[-1][: segs[-1].rstrip().rfind('(')]
            if head:
                segs[-1] = head
            else:
                segs.pop()
        node = _Node(pos)
        trailing = self._group_list(node)
        node.groups = [g for g in node.groups if g.units]
        if node.groups:
            segs.append(node)
        _append_text(segs, trailing)

    def _stray_ref(self, pos: int) -> None:
        if not self.warnings or self.warnings[-1].code != 'ref_outside_group':
            self._warn('ref_outside_group', '<REF> outside any <Unit> group (units=())', pos)
        segs = self._segs()
        if segs and isinstance(segs[-1], str):
            m = _TRAILING_INDEX_RE.search(segs[-1])
            if m is not None:
                if m.start():
                    segs[-1] = segs[-1][: m.start()]
                else:
                    segs.pop()
        self.refs.append((pos, None, 0))
        self.i += 1

    # ----------------------------------------------------------------- end
    def _finish(self) -> None:
        if not self.stack:
            return
        self._truncated('<Phrase>')
        for node in self.stack:
            self._warn('unclosed_phrase', '<Phrase> without </Phrase> (content kept)', node.pos)
        while self.stack:
            self._attach(self.stack.pop(), warn=False)

    def _clean(self, text: str, pos: int) -> str:
        """Remove special-token strings that text pieces formed when joined (e.g. ``'</Uni'``
        and ``'t>'`` around a dropped ``<image>``), so that ``.answer`` stays buildable."""
        while ('<' in text or '[' in text) and any(b in text for b in BANNED_IN_TEXT):
            for banned in BANNED_IN_TEXT:
                if banned in text:
                    self._warn('unexpected_token', f'{banned} formed in text was dropped', pos)
                    text = text.replace(banned, '')
        return text

    def _export(self, segs: list, triplets: list, body: list, pos: int = 0) -> list:
        out: list = []
        for seg in segs:
            if isinstance(seg, str):
                _append_text(out, self._clean(seg, pos))
                continue
            if all(isinstance(s, str) for s in seg.segs):  # the common flat phrase
                phrase: str | list = self._clean(''.join(seg.segs), seg.pos)
            else:
                inner = self._export(seg.segs, triplets, body, seg.pos)
                phrase = inner if any(not isinstance(s, str) for s in inner) else ''.join(inner)
            groups = []
            if seg.groups:
                tid = len(triplets)
                plain = _plain(phrase)
                name = cot_name(plain)
                for gi, g in enumerate(seg.groups):
                    g.tid, g.gi, g.phrase = tid, gi, plain
                    g.span = None if seg.end is None else (seg.pos, seg.end)
                    groups.append({'units': list(g.units), 'n': len(g.refs)})
                    body.append((name, tuple(g.units), len(g.refs)))
                triplets.append(((plain, tuple(tuple(g.units) for g in seg.groups)), seg.pos))
            out.append({'phrase': phrase, 'groups': groups})
        return out

    def _result(self) -> ParseResult:
        triplets: list = []
        body: list = []
        answer = self._export(self.root, triplets, body)
        run = 1
        for (prev, _), (key, pos) in zip(triplets, triplets[1:], strict=False):
            run = run + 1 if key == prev else 1
            if run == REPEAT_TRIPLETS:
                self._warn('repetition', f'the triplet {key[0][:40]!r} repeats {run}+ times', pos)
        refs = [
            RefInfo(pos, (), None, None, None)
            if g is None or g.tid is None
            else RefInfo(pos, g.routable, g.tid, g.gi, k, g.phrase, g.span)
            for pos, g, k in self.refs
        ]
        if self.cot is not None:
            mismatch = check_cot(self.cot, body, self.cot_pos)
            if mismatch is not None:
                self.warnings.append(mismatch)
        self.warnings.sort(key=lambda w: w.position)
        return ParseResult(answer=answer, refs=refs, cot=self.cot, warnings=self.warnings)
