# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""SAM prompts as text ("mask as prompt", SAM4MLLM §3.1): a codec that writes boxes and labelled
points with discretised coordinates, and a parser that reads them back from model output.

Text format (the paper gives none; this one follows Qwen-VL / the public code's
``[xxx,yyy,xxx,yyy]`` boxes and adds the paper's on-object flag to each point):

* a box ``[x1,y1,x2,y2]``, coordinates in bins ``0 .. num_bins - 1`` of the original image's width
  and height (``bin = floor(x / W * num_bins)``, zero-padded to ``len(str(num_bins - 1))`` digits);
* a point ``(x,y,l)``, ``l = 1`` on the object, ``0`` off it;
* PPG answers: per instance its box followed by its points, instances separated by a space;
  PQPP round-1 answers: boxes only; an empty target: ``No object found.``.

:meth:`PromptCodec.parse` never raises on model output: it returns the groups it can recover (a
group is a box and the points that follow it) plus :class:`PromptWarning`\\ s with stable codes
(:data:`PROMPT_WARNING_CODES`). Its cost is linear in the text length.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

#: Stable warning codes of :meth:`PromptCodec.parse`.
PROMPT_WARNING_CODES: tuple[str, ...] = (
    'no_prompt',  # neither a box nor "No object found." (the sample gets no mask)
    'out_of_range',  # a coordinate >= num_bins (clipped to num_bins - 1)
    'inverted_box',  # x1 > x2 or y1 > y2 (the two values are swapped)
    'orphan_point',  # a point before any box (dropped: SAM4MLLM points belong to a box)
    'bad_label',  # a point flag other than 0 / 1 (read as 1 when > 0)
    'unlabelled_point',  # a point without its flag (read as on the object)
    'malformed',  # text with brackets or digits that is not a box or a point (ignored)
    'too_many_groups',  # more boxes than max_groups (the extra ones are dropped)
    'too_many_points',  # more points in a group than max_points (the extra ones are dropped)
    'conflict',  # "No object found." together with boxes (the boxes win)
)

_NUM = r'\s*([0-9]{1,7})\s*'
_BOX_RE = f'\\[{_NUM},{_NUM},{_NUM},{_NUM}\\]'
_POINT_RE = f'\\({_NUM},{_NUM}(?:,{_NUM})?\\)'
_NO_OBJECT_RE = r'no\s+object'
_SCAN = re.compile(f'(?P<box>{_BOX_RE})|(?P<point>{_POINT_RE})|(?P<none>{_NO_OBJECT_RE})', re.I)
_LEFTOVER = re.compile(r'[\[\]()0-9]')


@dataclass(frozen=True)
class PromptWarning:
    """One recoverable problem of a parsed answer.

    Args:
        code (str): One of :data:`PROMPT_WARNING_CODES`.
        message (str): What was found and what was done.
        position (int): Character offset in the text (0 <= position <= len(text)).
    """

    code: str
    message: str
    position: int


@dataclass(frozen=True)
class PromptGroup:
    """One instance's SAM prompt, in bins.

    Args:
        box (tuple[int, int, int, int]): ``x1, y1, x2, y2`` bins, ``x1 <= x2``, ``y1 <= y2``.
        points (tuple[tuple[int, int, int], ...]): ``(x, y, label)`` bins, label 1 on the object,
            0 off it.
    """

    box: tuple[int, int, int, int]
    points: tuple[tuple[int, int, int], ...] = ()


@dataclass
class PromptParse:
    """Result of :meth:`PromptCodec.parse`.

    Attributes:
        groups (list[PromptGroup]): Recovered prompts, in text order.
        no_object (bool): The answer says "No object found." and holds no box.
        warnings (list[PromptWarning]): Problems found.
    """

    groups: list[PromptGroup] = field(default_factory=list)
    no_object: bool = False
    warnings: list[PromptWarning] = field(default_factory=list)

    @property
    def warning_codes(self) -> list[str]:
        """Codes of :attr:`warnings`, in order."""
        return [w.code for w in self.warnings]


class PromptCodec:
    """Write and read SAM prompts as text.

    Args:
        num_bins (int): Coordinate bins per image side (Qwen-VL and the public code: 1000).
            Defaults to 1000.
        no_object_text (str): The answer for an empty target. Defaults to ``'No object found.'``.
        max_groups (int): Most boxes read from one answer. Defaults to 16.
        max_points (int): Most points read per box. Defaults to 64.
    """

    def __init__(
        self,
        num_bins: int = 1000,
        *,
        no_object_text: str = 'No object found.',
        max_groups: int = 16,
        max_points: int = 64,
    ) -> None:
        if num_bins < 2 or num_bins > 10**6:
            raise ValueError(f'num_bins must be in [2, 1e6], got {num_bins}')
        if max_groups < 1 or max_points < 0:
            raise ValueError(
                f'need max_groups >= 1, max_points >= 0, got {max_groups}, {max_points}'
            )
        if not re.search(_NO_OBJECT_RE, no_object_text, re.I) or _LEFTOVER.search(no_object_text):
            raise ValueError(
                f'no_object_text must say "no object" (no brackets, digits): {no_object_text!r}'
            )
        self.num_bins = num_bins
        self.digits = len(str(num_bins - 1))
        self.no_object_text = no_object_text
        self.max_groups, self.max_points = max_groups, max_points

    # ------------------------------------------------------------------ coordinates
    def to_bin(self, value: float, size: float) -> int:
        """Bin of a pixel coordinate ``value`` on a side of ``size`` pixels (clipped)."""
        if not math.isfinite(value) or size <= 0:
            return 0
        return min(max(int(math.floor(value / size * self.num_bins)), 0), self.num_bins - 1)

    def from_bin(self, index: int, size: float) -> float:
        """Pixel coordinate of the centre of bin ``index`` on a side of ``size`` pixels."""
        return (min(max(index, 0), self.num_bins - 1) + 0.5) / self.num_bins * size

    def _num(self, v: int) -> str:
        return str(v).zfill(self.digits)

    # ------------------------------------------------------------------ writing
    def box_bins(self, box: Sequence[float], hw: Sequence[int]) -> tuple[int, int, int, int]:
        """Bins of a pixel ``xyxy`` box on an image of ``(h, w)`` pixels; the far edge is read
        as the last pixel inside the box (``x2 - 1e-6``), so ``[0, 0, W, H]`` is bins
        ``0 .. num_bins - 1``."""
        h, w = float(hw[0]), float(hw[1])
        x1, y1, x2, y2 = (float(v) for v in box)
        return (
            self.to_bin(x1, w),
            self.to_bin(y1, h),
            self.to_bin(max(x2 - 1e-6, x1), w),
            self.to_bin(max(y2 - 1e-6, y1), h),
        )

    def format_box(self, bins: Sequence[int]) -> str:
        """``[x1,y1,x2,y2]`` of box bins."""
        return '[' + ','.join(self._num(int(v)) for v in bins) + ']'

    def format_point(self, x: int, y: int, label: int) -> str:
        """``(x,y,l)`` of point bins and its on-object flag."""
        return f'({self._num(int(x))},{self._num(int(y))},{int(bool(label))})'

    def format_xy(self, x: int, y: int) -> str:
        """``(x,y)`` of point bins (a PQPP question's point, no flag)."""
        return f'({self._num(int(x))},{self._num(int(y))})'

    def format_groups(self, groups: Sequence[PromptGroup], with_points: bool = True) -> str:
        """The answer of ``groups`` (PPG with points, PQPP round 1 without); no group gives
        ``no_object_text``."""
        if not groups:
            return self.no_object_text
        parts = []
        for g in groups:
            text = self.format_box(g.box)
            if with_points and g.points:
                text += ' ' + ' '.join(self.format_point(*p) for p in g.points)
            parts.append(text)
        return ' '.join(parts)

    # ------------------------------------------------------------------ reading
    def _clip(self, raw: str, pos: int, out: PromptParse) -> int:
        v = int(raw)
        if v >= self.num_bins:
            out.warnings.append(
                PromptWarning('out_of_range', f'coordinate {v} >= {self.num_bins}, clipped', pos)
            )
            return self.num_bins - 1
        return v

    def _box(self, m: re.Match, out: PromptParse) -> PromptGroup:
        pos = m.start()
        x1, y1, x2, y2 = (self._clip(m.group(i), pos, out) for i in range(2, 6))
        if x1 > x2 or y1 > y2:
            out.warnings.append(
                PromptWarning('inverted_box', f'box {m.group(0)!r} is inverted, swapped', pos)
            )
            x1, x2 = min(x1, x2), max(x1, x2)
            y1, y2 = min(y1, y2), max(y1, y2)
        return PromptGroup((x1, y1, x2, y2))

    def _point(self, m: re.Match, out: PromptParse) -> tuple[int, int, int]:
        pos = m.start()
        x, y = self._clip(m.group(7), pos, out), self._clip(m.group(8), pos, out)
        raw = m.group(9)
        if raw is None:
            out.warnings.append(PromptWarning('unlabelled_point', f'{m.group(0)!r}: label 1', pos))
            return x, y, 1
        label = int(raw)
        if label not in (0, 1):
            out.warnings.append(PromptWarning('bad_label', f'{m.group(0)!r}: flag {label}', pos))
        return x, y, int(label > 0)

    def parse(self, text: str) -> PromptParse:
        """Read the prompts of one answer (see the module docstring); never raises.

        Args:
            text (str): Generated text (any string).

        Returns:
            PromptParse: Groups in text order, the "no object" flag and warnings.
        """
        out = PromptParse()
        if not isinstance(text, str):
            out.warnings.append(PromptWarning('no_prompt', f'not text: {type(text).__name__}', 0))
            return out
        groups: list[tuple[PromptGroup, list[tuple[int, int, int]]]] = []
        said_none, last, leftover = None, 0, None
        dropping = warned_groups = False  # dropping: inside a box cut by max_groups
        for m in _SCAN.finditer(text):
            if leftover is None:
                leftover = _LEFTOVER.search(text, last, m.start())
            last = m.end()
            if m.group('none') is not None:
                said_none = m.start() if said_none is None else said_none
            elif m.group('box') is not None:
                dropping = len(groups) >= self.max_groups
                if dropping and not warned_groups:
                    warned_groups = True
                    out.warnings.append(
                        PromptWarning('too_many_groups', f'> {self.max_groups} boxes', m.start())
                    )
                if not dropping:
                    groups.append((self._box(m, out), []))
            elif dropping:
                continue
            elif not groups:
                out.warnings.append(
                    PromptWarning('orphan_point', 'point before any box', m.start())
                )
            elif len(groups[-1][1]) < self.max_points:
                groups[-1][1].append(self._point(m, out))
            elif len(groups[-1][1]) == self.max_points:
                out.warnings.append(
                    PromptWarning('too_many_points', f'> {self.max_points} points', m.start())
                )
                groups[-1][1].append((0, 0, -1))  # marks the warning as given; never kept
        if leftover is None:
            leftover = _LEFTOVER.search(text, last)
        if leftover is not None:
            out.warnings.append(
                PromptWarning('malformed', 'text with brackets/digits ignored', leftover.start())
            )
        out.groups = [PromptGroup(g.box, tuple(p for p in pts if p[2] >= 0)) for g, pts in groups]
        if said_none is not None and out.groups:
            out.warnings.append(PromptWarning('conflict', '"no object" and boxes', said_none))
        out.no_object = said_none is not None and not out.groups
        if not out.groups and not out.no_object:
            out.warnings.append(PromptWarning('no_prompt', 'no box and no "no object"', len(text)))
        return out

    def to_pixels(
        self, group: PromptGroup, hw: Sequence[int]
    ) -> tuple[list[float], list[tuple[float, float, int]]]:
        """Pixel box ``[x1, y1, x2, y2]`` (bin edges: ``x2`` is the far edge of its bin) and
        pixel points (bin centres) of a group on an image of ``(h, w)`` pixels."""
        h, w = float(hw[0]), float(hw[1])
        x1, y1, x2, y2 = group.box
        box = [
            x1 / self.num_bins * w,
            y1 / self.num_bins * h,
            (x2 + 1) / self.num_bins * w,
            (y2 + 1) / self.num_bins * h,
        ]
        pts = [(self.from_bin(x, w), self.from_bin(y, h), lab) for x, y, lab in group.points]
        return box, pts
