# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""Draw an inference result: its instances on the image, coloured like the phrases of the answer.

One colour per distinct phrase, in order of appearance in the answer, so that the overlay, the
answer strip under it and the web demo's answer text (:func:`answer_segments` + :func:`color_hex`)
agree.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import cv2
import numpy as np

from mmrefvlm.datasets.geometry import decode_mask
from mmrefvlm.trp import parse_answer

from .draw import PALETTE, depth_to_rgb, draw_instances, side_by_side

_FONT = cv2.FONT_HERSHEY_SIMPLEX
_TEXT_GREY = (40, 40, 40)


def answer_segments(answer: str | Sequence[Any]) -> list[tuple[str, str | None]]:
    """Split an answer into plain-text pieces, each tagged with the phrase it belongs to.

    Args:
        answer (str | Sequence): Raw TRP text (parsed here, never raising) or a structured answer
            (text and phrase-group segments, as ``RefVLMDataSample.pred_answer``).

    Returns:
        list[tuple[str, str | None]]: ``(text, phrase)`` in reading order; ``phrase`` is the plain
        text of the innermost triplet (a phrase with groups) containing the piece, or None.
        Joining the texts gives the plain answer.
    """
    segments = parse_answer(answer).answer if isinstance(answer, str) else answer
    out: list[tuple[str, str | None]] = []

    def walk(segs: Sequence[Any], phrase: str | None) -> None:
        for seg in segs:
            if isinstance(seg, str):
                if seg:
                    out.append((seg, phrase))
                continue
            inner = seg['phrase']
            own = _plain(inner) if seg.get('groups') else phrase
            walk([inner] if isinstance(inner, str) else inner, own)

    walk(segments, None)
    return out


def _plain(phrase: str | Sequence[Any]) -> str:
    if isinstance(phrase, str):
        return phrase
    return ''.join(s if isinstance(s, str) else _plain(s['phrase']) for s in phrase)


def phrase_colors(
    segments: Sequence[tuple[str, str | None]], extra: Sequence[str] = ()
) -> dict[str, tuple[int, int, int]]:
    """RGB colour of each distinct phrase: answer order first, then ``extra`` phrases (instances
    whose phrase the text does not show)."""
    colors: dict[str, tuple[int, int, int]] = {}
    for phrase in [p for _, p in segments if p is not None] + list(extra):
        if phrase not in colors:
            colors[phrase] = PALETTE[len(colors) % len(PALETTE)]
    return colors


def color_hex(rgb: Sequence[int]) -> str:
    """``(230, 25, 75)`` -> ``'#e6194b'``."""
    return '#' + ''.join(f'{int(v):02x}' for v in rgb[:3])


#: Result keys (``instances_to_list``) -> instance fields; other keys but these are plugin fields.
_RESULT_FIELDS = dict(bbox='bboxes', mask='masks', keypoints='keypoints', score='scores')
_NOT_FIELDS = frozenset({'phrase', 'unit', 'group', 'depth'})  # depth: panels, drawn below


def _result_field(inst: Mapping, key: str, h: int, w: int) -> np.ndarray:
    if key == 'mask':
        return decode_mask(inst[key], h, w).astype(bool)
    return np.asarray(inst[key], np.float32)


def _instance_arrays(instances: Sequence[Mapping], h: int, w: int) -> dict[str, Any]:
    """Result instances -> the stacked, NaN/False-filled arrays ``draw_instances`` reads (with
    ``units`` and ``unit_fields``, so a plugin unit's fields reach its drawer)."""
    n = len(instances)
    values: dict[str, list[tuple[int, np.ndarray]]] = {}
    unit_fields = []
    for i, inst in enumerate(instances):
        own = []
        for key in inst:
            if key in _NOT_FIELDS or inst[key] is None:
                continue
            name = _RESULT_FIELDS.get(key, key)
            values.setdefault(name, []).append((i, _result_field(inst, key, h, w)))
            own.append(name)
        unit_fields.append(tuple(own))
    arrays: dict[str, Any] = dict(
        labels=[i.get('phrase', '') for i in instances],
        units=[i.get('unit') for i in instances],
        unit_fields=unit_fields,
    )
    for name, parts in values.items():
        shape = parts[0][1].shape
        if any(v.shape != shape for _, v in parts):
            continue  # ragged (e.g. keypoint sets of different K): not stackable, not drawn
        proto = parts[0][1]
        full = np.zeros((n, *shape), bool) if proto.dtype == bool else np.full((n, *shape), np.nan)
        for i, v in parts:
            full[i] = v
        arrays[name] = full.astype(proto.dtype)
    return arrays


def _answer_strip(
    segments: Sequence[tuple[str, str | None]], colors: Mapping[str, Sequence[int]], width: int
) -> np.ndarray:
    """The answer as wrapped text on white, phrase words in their colour ((h, width, 3) uint8)."""
    scale, thick, line_h, pad = 0.5, 1, 20, 6
    words: list[tuple[str, tuple[int, ...]]] = []
    for text, phrase in segments:
        color = tuple(colors[phrase]) if phrase is not None else _TEXT_GREY
        words += [(word, color) for word in text.split()]
    lines: list[list[tuple[str, tuple[int, ...], int]]] = [[]]
    x = pad
    for word, color in words:
        ww = cv2.getTextSize(word + ' ', _FONT, scale, thick)[0][0]
        if x + ww > width - pad and lines[-1]:
            lines.append([])
            x = pad
        lines[-1].append((word, color, x))
        x += ww
    strip = np.full((pad + line_h * len(lines), width, 3), 255, np.uint8)
    for row, line in enumerate(lines):
        for word, color, x0 in line:
            y = pad + line_h * row + 14
            cv2.putText(strip, word, (x0, y), _FONT, scale, color, thick, cv2.LINE_AA)
    return strip


def draw_answer(img: np.ndarray, result: Mapping[str, Any], *, min_side: int = 256) -> np.ndarray:
    """The overlay of one inference result.

    The image with every instance's box / mask / keypoints in its phrase's colour, one panel per
    depth map to its right, and the answer text underneath with the phrases in the same colours.

    Args:
        img (np.ndarray): (H, W, 3) uint8 RGB, the image the result belongs to.
        result (Mapping): A ``RefVLMInferencer`` result (``text``, ``instances``); ``mask`` as
            COCO RLE, ``depth`` as an (H, W) array in metres (other depth values are skipped).
        min_side (int): Small images are upscaled (nearest) until their longer side reaches this,
            so that labels stay readable.

    Returns:
        np.ndarray: (H', W', 3) uint8 RGB.
    """
    h, w = img.shape[:2]
    instances = list(result.get('instances') or [])
    segments = answer_segments(result.get('text') or '')
    colors = phrase_colors(segments, [str(i.get('phrase', '')) for i in instances])
    scale = max(1, int(np.ceil(min_side / max(h, w))))
    drawn = draw_instances(
        img,
        _instance_arrays(instances, h, w),
        scale=scale,
        colors=[colors[str(i.get('phrase', ''))] for i in instances],
    )
    panels, titles = [drawn], ['prediction']
    for inst in instances:
        depth = inst.get('depth')
        if isinstance(depth, np.ndarray) and depth.shape == (h, w):
            panels.append(depth_to_rgb(depth))
            titles.append(f'depth: {inst.get("phrase", "")}')
    canvas = side_by_side(panels, titles) if len(panels) > 1 else drawn
    strip = _answer_strip(segments, colors, canvas.shape[1])
    return np.ascontiguousarray(np.concatenate([canvas, strip], 0))
