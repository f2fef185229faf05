# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""The Python RLE check agrees with pycocotools on fuzzed ``counts`` strings (issue 17).

pycocotools' C reader accumulates each varint in 32-bit ``int`` shifts, so a count written with
more than 6 characters can decode to another value than the exact one. Before, the Python check
accepted such a string (exact runs summing to h*w) and pycocotools then raised a bare
``ValueError: Invalid RLE mask representation`` in the middle of training.

Properties, over runs of random masks written with random (also over-long, padded) varints and
random character edits:

* pycocotools' own encoding of a mask is accepted (with its area);
* accepted by the check  =>  pycocotools decodes it, to exactly the mask of the checked runs;
* refused by the check   =>  the string has an over-long varint, or pycocotools' own reading of
  it is not a valid mask of that size either (its runs, re-encoded canonically, are refused).

pycocotools is only called on strings it parses safely (characters '0'..'o', last varint closed):
on others its C reader would run past the end of the string; the check refuses those outright.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from pycocotools import mask as mask_utils

from mmrefvlm.datasets.rle import MAX_VARINT_CHARS, check_rle, rle_counts_from_string

# derandomize: CI runs the same 300 cases every time (a failure reproduces; new cases are added
# with @example, as the one a random run found below)
SETTINGS = settings(
    max_examples=300,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)


def _varint(value: int, length: int) -> str:
    """``value`` as a varint of at least ``length`` characters (extra ones keep its value)."""
    groups = []
    while True:
        c = value & 0x1F
        value >>= 5
        groups.append(c)
        if not ((value != -1) if c & 0x10 else (value != 0)):
            break
    while len(groups) < length:  # sign-extension padding: the same number, written longer
        groups.append(0x1F if groups[-1] & 0x10 else 0)
    return ''.join(
        chr(48 + (c | (0x20 if i < len(groups) - 1 else 0))) for i, c in enumerate(groups)
    )


def _encode(runs: list[int], lengths: list[int]) -> str:
    out = []
    for i, run in enumerate(runs):
        delta = run - runs[i - 2] if i > 2 else run
        out.append(_varint(delta, lengths[i % len(lengths)]))
    return ''.join(out)


def _c_safe(counts: str) -> bool:
    return (
        bool(counts)
        and all('0' <= ch <= 'o' for ch in counts)
        and not (ord(counts[-1]) - 48) & 0x20
    )


def _render(runs: list[int], h: int, w: int) -> np.ndarray:
    values = np.arange(len(runs)) % 2
    return np.repeat(values, runs).astype(np.uint8).reshape(w, h).T


@st.composite
def rle_strings(draw):
    h, w = draw(st.integers(1, 6)), draw(st.integers(1, 6))
    if draw(st.integers(0, 4)) == 0:  # pycocotools' own encoding of a random mask
        bits = draw(st.lists(st.booleans(), min_size=h * w, max_size=h * w))
        mask = np.asfortranarray(np.array(bits, dtype=np.uint8).reshape(h, w))
        return h, w, mask_utils.encode(mask)['counts'].decode()
    cuts = sorted(draw(st.lists(st.integers(0, h * w), max_size=8)))
    bounds = [0, *cuts, h * w]
    runs = [b - a for a, b in zip(bounds, bounds[1:], strict=False)]
    lengths = draw(st.lists(st.integers(1, MAX_VARINT_CHARS + 3), min_size=1, max_size=4))
    counts = _encode(runs, lengths)
    edits = draw(st.lists(st.tuples(st.integers(0, 63), st.integers(48, 111)), max_size=2))
    chars = list(counts)
    for pos, code in edits:  # random character substitutions
        if chars:
            chars[pos % len(chars)] = chr(code)
    return h, w, ''.join(chars)


def _runs_or_none(counts: str) -> list[int] | None:
    try:
        return rle_counts_from_string(counts)
    except ValueError:  # e.g. a varint over MAX_VARINT_CHARS, which pycocotools itself can write
        return None


@SETTINGS
@given(rle_strings())
# pycocotools re-encodes its overflowed 32-bit reading of this 1 x 1 mask as the same string, a
# 7-character varint included: its "own encoding", yet not a valid mask
@example((1, 1, '0PPPPP`001'))
def test_check_agrees_with_pycocotools(case):
    h, w, counts = case
    err, area = check_rle({'size': [h, w], 'counts': counts}, h, w)
    if not _c_safe(counts):
        assert err is not None  # a cut varint or a foreign character: pycocotools would overrun
        return
    rle = {'size': [h, w], 'counts': counts.encode('ascii')}
    canonical = mask_utils.merge([rle])['counts'].decode('ascii')  # its runs, re-encoded
    runs = _runs_or_none(canonical)
    if canonical == counts and runs is not None and sum(runs) == h * w:
        assert err is None, (counts, err)  # pycocotools' own encoding of a valid mask
    if err is None:
        runs = rle_counts_from_string(counts)
        decoded = mask_utils.decode(rle)
        assert np.array_equal(decoded, _render(runs, h, w))
        assert int(mask_utils.area(rle)) == area == int(decoded.sum())
        return
    # refused: over-long varint, or pycocotools does not read a valid h x w mask either
    c_err, _ = check_rle({'size': [h, w], 'counts': canonical}, h, w)
    assert 'varint' in err or c_err is not None, (counts, err, canonical)


def test_long_negative_delta_is_refused_not_misread():
    # runs [10, 20, 30, 0, 40]: the 4th count is the delta -20, written with 7 characters.
    # Exact reading: 0 (valid); pycocotools' 32-bit reading: 16 (sum 116 != 100).
    counts = _varint(10, 1) + _varint(20, 1) + _varint(30, 1) + _varint(-20, 7) + _varint(10, 1)
    assert rle_counts_from_string.__module__ == 'mmrefvlm.datasets.rle'
    err, _ = check_rle({'size': [10, 10], 'counts': counts}, 10, 10)
    assert err is not None and '7-character varint' in err
    with pytest.raises(ValueError, match='Invalid RLE'):  # what training died of before
        mask_utils.decode({'size': [10, 10], 'counts': counts.encode()})
    short = _varint(10, 1) + _varint(20, 1) + _varint(30, 1) + _varint(-20, 6) + _varint(10, 1)
    assert check_rle({'size': [10, 10], 'counts': short}, 10, 10) == (None, 20)
    assert int(mask_utils.decode({'size': [10, 10], 'counts': short.encode()}).sum()) == 20
