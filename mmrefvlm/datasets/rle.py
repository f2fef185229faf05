# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""COCO compressed RLE: parse and check the ``counts`` string exactly as pycocotools reads it.

A compressed count is a little-endian varint of ASCII characters ``'0' + (0..63)``: 5 payload bits
per character, a continuation bit (0x20), and a sign bit (0x10) on the last character; from the
third count on, the value is a difference to the count two places earlier.

pycocotools' C reader (``rleFrString``) accumulates each varint with 32-bit ``int`` shifts and
stores it as a 32-bit ``uint``. For varints of at most :data:`MAX_VARINT_CHARS` characters this
is the exact value; longer ones overflow (undefined behaviour in C, in practice a different
value), so the Python check refuses them instead of accepting a mask that pycocotools then
decodes differently. A count of a real mask of up to 2**29 pixels never needs more characters.
A string is also refused when a character lies outside ``'0'..'o'`` or a varint is cut, since
the C reader then reads past the end of the string.
"""

from __future__ import annotations

from typing import Any

__all__ = ['MAX_VARINT_CHARS', 'rle_counts_from_string', 'check_rle']

#: Longest varint pycocotools decodes without 32-bit overflow (6 x 5 = 30 bits, sign included).
MAX_VARINT_CHARS = 6


def rle_counts_from_string(counts: str) -> list[int]:
    """Run lengths of a COCO compressed RLE string (the inverse of ``pycocotools`` encoding).

    Args:
        counts (str): The ``counts`` field of a compressed RLE.

    Returns:
        list[int]: Run lengths, alternating background / foreground, starting with background.
        Exact integers: a negative run (invalid) is returned as such, for the caller to refuse.

    Raises:
        ValueError: A character outside ``'0'..'o'``, a truncated varint, or a varint longer than
            :data:`MAX_VARINT_CHARS` characters.
    """
    runs: list[int] = []
    pos, size = 0, len(counts)
    while pos < size:
        start, value, shift, more = pos, 0, 0, True
        while more:
            if pos >= size:
                raise ValueError(f'truncated RLE counts at character {pos}')
            code = ord(counts[pos]) - 48
            if not 0 <= code < 64:
                raise ValueError(f'invalid RLE character {counts[pos]!r} at {pos}')
            value |= (code & 0x1F) << shift
            more = bool(code & 0x20)
            pos += 1
            shift += 5
            if not more and code & 0x10:
                value |= -1 << shift
        if pos - start > MAX_VARINT_CHARS:
            raise ValueError(
                f'count {len(runs)} at character {start} is a {pos - start}-character varint; '
                f'pycocotools reads at most {MAX_VARINT_CHARS} characters without 32-bit '
                'overflow (re-encode the mask with pycocotools.mask.encode)'
            )
        if len(runs) > 2:
            value += runs[-2]
        runs.append(value)
    return runs


def _size_error(size: Any, height: int | None, width: int | None) -> str | None:
    if (
        not isinstance(size, (list, tuple))
        or len(size) != 2
        or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in size)
    ):
        return f'RLE size must be [h, w] positive ints, got {size!r}'
    if height is not None and width is not None and list(size) != [height, width]:
        return f'RLE size {list(size)} does not match the image [h, w] = [{height}, {width}]'
    return None


def check_rle(
    rle: Any,
    height: int | None = None,
    width: int | None = None,
    *,
    allow_uncompressed: bool = False,
) -> tuple[str | None, int]:
    """Check a COCO RLE and count its foreground pixels without decoding it.

    Records hold compressed counts only (a string, as
    ``pycocotools.mask.encode(...)['counts'].decode()``, docs/data_format.md): the validator and
    the data pipeline both refuse ``counts`` lists. Converters reading COCO's own crowd masks
    pass ``allow_uncompressed=True``.

    Args:
        rle (Any): The candidate ``{"size": [h, w], "counts": str}``.
        height (int, optional): Expected mask height (the image height).
        width (int, optional): Expected mask width.
        allow_uncompressed (bool): Also accept ``counts`` as a list of ints. Default False.

    Returns:
        tuple[str | None, int]: An error message (None if valid) and the foreground area.
    """
    if not isinstance(rle, dict) or 'size' not in rle or 'counts' not in rle:
        return 'an RLE mask must be {"size": [h, w], "counts": str}', 0
    size = rle['size']
    err = _size_error(size, height, width)
    if err:
        return err, 0
    counts = rle['counts']
    if isinstance(counts, list):
        if not allow_uncompressed:
            return (
                'RLE counts is an uncompressed list; store compressed counts '
                '(pycocotools.mask.encode(...)["counts"].decode())'
            ), 0
        if not all(isinstance(c, int) and not isinstance(c, bool) for c in counts):
            return 'uncompressed RLE counts must be ints', 0
        runs = counts
    elif isinstance(counts, (str, bytes)):
        try:
            runs = rle_counts_from_string(
                counts.decode('ascii') if isinstance(counts, bytes) else counts
            )
        except (ValueError, UnicodeDecodeError) as err:
            return f'invalid RLE counts: {err}', 0
    else:
        return f'RLE counts must be a string, got {type(counts).__name__}', 0
    if any(r < 0 for r in runs):
        return 'invalid RLE counts: negative run length', 0
    if sum(runs) != size[0] * size[1]:
        return (
            f'invalid RLE counts: runs cover {sum(runs)} pixels, size {list(size)} needs '
            f'{size[0] * size[1]}'
        ), 0
    return None, int(sum(runs[1::2]))
