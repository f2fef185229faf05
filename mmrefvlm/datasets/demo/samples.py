# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""Per-task conversations and visual prompts of the demo dataset (``docs/data_format.md``).

Each builder takes the scene's objects, their COCO RLEs and a generator, and returns
``(conversation, visual_prompts)``. User turns are template references; assistant answers are
plain strings or structured answers whose targets index the record's ``instances``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from scipy import ndimage

from ..records import TASKS
from .expressions import (
    caption_text,
    empty_expression,
    group_expressions,
    left_to_right,
    unique_expressions,
    vqa_pair,
)
from .scene import SHAPES, DemoObject

#: Every task the demo dataset writes, in a fixed order (also the per-task RNG stream id): all the
#: tasks of the record format.
DEMO_TASKS: tuple[str, ...] = TASKS
PROMPT_TYPES: tuple[str, ...] = ('point', 'box', 'scribble', 'mask')
#: Probabilities of the three GRES sample kinds: empty target, several targets, one target.
GRES_KIND_PROBS: tuple[float, float, float] = (0.4, 0.3, 0.3)

Conversation = list[dict]
VisualPrompts = list[dict]


def _user(task: str, **slots: str) -> dict:
    return {'role': 'user', 'template': task, 'slots': slots}


def _assistant(answer: str | list) -> dict:
    return {'role': 'assistant', 'answer': answer}


def _group(phrase: str | list, unit: str, targets: Sequence[int | None]) -> dict:
    return {
        'phrase': phrase,
        'groups': [{'units': [unit], 'n': len(targets), 'targets': list(targets)}],
    }


def _pixel_centres(mask: np.ndarray) -> np.ndarray:
    """(K, 2) float pixel-centre coordinates ``(x, y)`` of the True pixels, row-major order."""
    ys, xs = np.nonzero(mask)
    return np.stack([xs + 0.5, ys + 0.5], axis=1)


def visual_prompt(
    kind: str,
    obj: DemoObject,
    rle: dict,
    index: int,
    width: int,
    height: int,
    rng: np.random.Generator,
) -> dict:
    """One visual prompt of ``kind`` on ``obj`` (``instance`` = ``index``).

    * point: the centre of a random pixel of the mask;
    * box: the object's box with each side moved by up to 15 % of its extent, kept in the image;
    * scribble: 3-5 pixel centres of the eroded mask ordered along a random direction;
    * mask: the object's RLE.
    """
    if kind == 'point':
        pts = _pixel_centres(obj.mask)
        x, y = pts[int(rng.integers(len(pts)))]
        return {'type': 'point', 'point': [float(x), float(y)], 'instance': index}
    if kind == 'box':
        x1, y1, x2, y2 = obj.bbox
        jx, jy = 0.15 * (x2 - x1), 0.15 * (y2 - y1)
        d = rng.uniform(-1, 1, size=4) * np.array([jx, jy, jx, jy])
        nx1, ny1 = min(max(x1 + d[0], 0.0), width - 1.0), min(max(y1 + d[1], 0.0), height - 1.0)
        nx2 = min(max(x2 + d[2], nx1 + 1.0), float(width))
        ny2 = min(max(y2 + d[3], ny1 + 1.0), float(height))
        return {
            'type': 'box',
            'box': [round(float(v), 1) for v in (nx1, ny1, nx2, ny2)],
            'instance': index,
        }
    if kind == 'scribble':
        eroded = ndimage.binary_erosion(obj.mask, iterations=2)
        pts = _pixel_centres(eroded if eroded.sum() >= 5 else obj.mask)
        num = min(int(rng.integers(3, 6)), len(pts))
        chosen = pts[rng.choice(len(pts), size=num, replace=False)]
        ang = rng.uniform(0, np.pi)
        order = np.argsort(chosen @ np.array([np.cos(ang), np.sin(ang)]), kind='stable')
        return {
            'type': 'scribble',
            'scribble': [[float(x), float(y)] for x, y in chosen[order]],
            'instance': index,
        }
    if kind == 'mask':
        return {'type': 'mask', 'mask': dict(rle), 'instance': index}
    raise ValueError(f'unknown visual prompt type {kind!r}; expected one of {PROMPT_TYPES}')


def _caption(objs, rles, size, rng) -> tuple[Conversation, VisualPrompts]:
    return [_user('caption'), _assistant(caption_text(objs))], []


def _vqa(objs, rles, size, rng) -> tuple[Conversation, VisualPrompts]:
    question, answer = vqa_pair(objs, rng)
    return [_user('vqa', question=question), _assistant(answer)], []


def _referring(unit: str, task: str) -> Callable:
    def build(objs, rles, size, rng) -> tuple[Conversation, VisualPrompts]:
        target = int(rng.integers(len(objs)))
        exprs = unique_expressions(objs, target)
        expr = exprs[int(rng.integers(len(exprs)))]
        return [_user(task, expr=expr), _assistant([_group(expr, unit, [target]), '.'])], []

    return build


def _gres(objs, rles, size, rng) -> tuple[Conversation, VisualPrompts]:
    kind = rng.choice(3, p=GRES_KIND_PROBS)
    groups = group_expressions(objs)
    targets: list[int]
    if kind == 0:
        expr, targets = empty_expression(objs, rng), []
    elif kind == 1 and groups:
        expr, targets = groups[int(rng.integers(len(groups)))]
    else:
        target = int(rng.integers(len(objs)))
        exprs = unique_expressions(objs, target)
        expr, targets = exprs[int(rng.integers(len(exprs)))], [target]
    answer = [_group(expr, 'mask', left_to_right(objs, targets)), '.']
    return [_user('gres', expr=expr), _assistant(answer)], []


def _reg(objs, rles, size: tuple[int, int], rng) -> tuple[Conversation, VisualPrompts]:
    target = int(rng.integers(len(objs)))
    kind = PROMPT_TYPES[int(rng.integers(len(PROMPT_TYPES)))]
    vp = visual_prompt(kind, objs[target], rles[target], target, *size, rng)
    obj = objs[target]
    return [_user('reg'), _assistant(f'a {obj.colour} {obj.shape}')], [vp]


def _interactive(unit: str, task: str) -> Callable:
    def build(objs, rles, size: tuple[int, int], rng) -> tuple[Conversation, VisualPrompts]:
        target = int(rng.integers(len(objs)))
        kind = PROMPT_TYPES[int(rng.integers(len(PROMPT_TYPES)))]
        vp = visual_prompt(kind, objs[target], rles[target], target, *size, rng)
        obj = objs[target]
        answer = [_group(f'the {obj.colour} {obj.shape}', unit, [target]), '.']
        return [_user(task), _assistant(answer)], [vp]

    return build


def _gcg(unit: str, task: str) -> Callable:
    def build(objs, rles, size, rng) -> tuple[Conversation, VisualPrompts]:
        order = left_to_right(objs, list(range(len(objs))))

        def phrase(i: int, first: bool) -> dict:
            text = f'a {objs[i].colour} {objs[i].shape}'
            return _group(text[0].upper() + text[1:] if first else text, unit, [i])

        if len(order) == 1:
            answer = [phrase(order[0], True), ' is in the image.']
        elif len(order) == 2:
            a, b = order if rng.random() < 0.5 else order[::-1]
            dx = objs[a].centre[0] - objs[b].centre[0]
            dy = objs[a].centre[1] - objs[b].centre[1]
            if abs(dx) >= abs(dy):
                rel = ' to the left of ' if dx < 0 else ' to the right of '
            else:
                rel = ' above ' if dy < 0 else ' below '
            answer = [phrase(a, True), rel, phrase(b, False), '.']
        else:
            answer = []
            for k, i in enumerate(order):
                if k:
                    answer.append(' and ' if k == len(order) - 1 else ', ')
                answer.append(phrase(i, k == 0))
            answer.append(', from left to right.')
        return [_user(task), _assistant(answer)], []

    return build


def _per_class(unit: str, task: str) -> Callable:
    def build(objs, rles, size, rng) -> tuple[Conversation, VisualPrompts]:
        answer: list = []
        for shape in SHAPES:
            inds = [i for i, o in enumerate(objs) if o.shape == shape]
            if inds:
                if answer:
                    answer.append(', ')
                answer.append(_group(shape, unit, left_to_right(objs, inds)))
        answer.append('.')
        return [_user(task), _assistant(answer)], []

    return build


def _depth(objs, rles, size, rng) -> tuple[Conversation, VisualPrompts]:
    return [_user('depth'), _assistant([_group('depth map', 'depth', [None]), '.'])], []


#: task -> builder(objects, rles, (width, height), rng) -> (conversation, visual_prompts)
SAMPLE_BUILDERS: dict[str, Callable] = {
    'caption': _caption,
    'vqa': _vqa,
    'rec': _referring('box', 'rec'),
    'res': _referring('mask', 'res'),
    'reg': _reg,
    'gres': _gres,
    'ig_box': _interactive('box', 'ig_box'),
    'ig_mask': _interactive('mask', 'ig_mask'),
    'ig_keypoint': _interactive('keypoint', 'ig_keypoint'),
    'gcg_box': _gcg('box', 'gcg_box'),
    'gcg_mask': _gcg('mask', 'gcg_mask'),
    'ovd': _per_class('box', 'ovd'),
    'ovs': _per_class('mask', 'ovs'),
    'keypoint': _per_class('keypoint', 'keypoint'),
    'depth': _depth,
}
