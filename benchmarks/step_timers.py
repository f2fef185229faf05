# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""Nested wall-clock sections for the training-step and inference benchmarks.

:class:`Sections` keeps a stack of open sections; closing one adds its *exclusive* time (its
duration minus its child sections') to its name, so the exclusive times of all sections plus the
uncovered remainder add up to the wall-clock time exactly. :meth:`Sections.wrap` instruments a
bound method or module function in place (instance attribute or module global; nothing in
``mmrefvlm`` is edited). With ``emit_ranges`` every section also opens a
``torch.profiler.record_function`` range of the same name, so a profiler trace can be attributed
to the same components (:func:`attribute_profile`).
"""

from __future__ import annotations

import functools
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import torch


class Sections:
    """Exclusive wall-clock time per section name (see the module docstring)."""

    def __init__(self, sync: Callable[[], None] | None = None) -> None:
        self.stack: list[list] = []
        self.exclusive: dict[str, float] = defaultdict(float)
        self.marks: dict[str, float] = {}
        self.emit_ranges = False
        self.sync = sync  # e.g. torch.cuda.synchronize: section times include the device work

    def now(self) -> float:
        """``time.perf_counter()`` after the device caught up (when ``sync`` is set)."""
        if self.sync is not None:
            self.sync()
        return time.perf_counter()

    def reset(self) -> None:
        """Forget accumulated times and marks (open sections keep running)."""
        self.exclusive = defaultdict(float)
        self.marks = {}

    def top(self) -> str | None:
        """Name of the innermost open section."""
        return self.stack[-1][0] if self.stack else None

    def push(self, name: str) -> None:
        """Open section ``name``."""
        rf = None
        if self.emit_ranges:
            rf = torch.autograd.profiler.record_function(name)
            rf.__enter__()
        self.stack.append([name, self.now(), 0.0, rf])

    def pop(self) -> float:
        """Close the innermost section; returns its inclusive duration (s)."""
        name, start, child, rf = self.stack.pop()
        dur = self.now() - start
        if rf is not None:
            rf.__exit__(None, None, None)
        self.exclusive[name] += dur - child
        if self.stack:
            self.stack[-1][2] += dur
        return dur

    def mark(self, key: str) -> None:
        """Record the time of an event (e.g. a gradient hook firing)."""
        self.marks[key] = self.now()

    def wrap(self, owner: Any, attr: str, name: str | Callable[[], str]) -> None:
        """Replace ``owner.attr`` by a timed version; ``name`` may be computed at call time."""
        fn = getattr(owner, attr)

        @functools.wraps(fn)
        def timed(*args, **kwargs):
            self.push(name() if callable(name) else name)
            try:
                return fn(*args, **kwargs)
            finally:
                self.pop()

        setattr(owner, attr, timed)


def attribute_profile(events, section_names: set[str]) -> dict[str, dict[str, float]]:
    """Split a ``torch.profiler`` CPU trace into forward and backward time per section.

    Forward: the exclusive duration of each section's ``record_function`` range. Backward: every
    top-level ``autograd::engine::evaluate_function`` event is charged to the section whose
    forward op created the autograd node (same ``sequence_nr``; the op's innermost enclosing
    section range). Unattributed backward time goes to ``'(unattributed)'``.

    Returns:
        dict: ``{'forward': {section: us}, 'backward': {section: us}}``.
    """
    fwd: dict[str, float] = defaultdict(float)
    bwd: dict[str, float] = defaultdict(float)
    seq_owner: dict[int, str] = {}
    for ev in events:
        if ev.name in section_names:
            child = sum(c.time_range.elapsed_us() for c in _section_descendants(ev, section_names))
            fwd[ev.name] += ev.time_range.elapsed_us() - child
        elif ev.sequence_nr >= 0 and not ev.name.startswith('autograd::engine'):
            owner = _enclosing_section(ev, section_names)
            if owner is not None:
                seq_owner.setdefault(ev.sequence_nr, owner)
    for ev in events:
        if ev.name.startswith('autograd::engine::evaluate_function') and not _inside_backward(ev):
            bwd[seq_owner.get(ev.sequence_nr, '(unattributed)')] += ev.time_range.elapsed_us()
    return dict(forward=dict(fwd), backward=dict(bwd))


def _enclosing_section(ev, names: set[str]) -> str | None:
    parent = ev.cpu_parent
    while parent is not None:
        if parent.name in names:
            return parent.name
        parent = parent.cpu_parent
    return None


def _section_descendants(ev, names: set[str]):
    """The outermost section ranges strictly inside ``ev``."""
    for c in ev.cpu_children:
        if c.name in names:
            yield c
        else:
            yield from _section_descendants(c, names)


def _inside_backward(ev) -> bool:
    parent = ev.cpu_parent
    while parent is not None:
        if parent.name.startswith('autograd::engine::evaluate_function'):
            return True
        parent = parent.cpu_parent
    return False
