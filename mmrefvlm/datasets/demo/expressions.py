# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""Language of the demo dataset: referring expressions, VQA pairs and captions for a scene.

Every expression is checked against the scene so that it means what the answer says: a singular
expression matches exactly one object, a plural one exactly the listed objects (possibly none).
"""

from __future__ import annotations

import numpy as np

from .scene import COLOURS, PLURALS, SHAPES, DemoObject

#: Minimum centre distance (pixels) for a spatial word ("left", "top") to count as unambiguous.
SPATIAL_MARGIN = 8.0
NUMBER_WORDS = ('zero', 'one', 'two', 'three', 'four', 'five', 'six', 'seven', 'eight', 'nine')


def left_to_right(objects: list[DemoObject], inds: list[int]) -> list[int]:
    """Sort instance indices by box centre x, then y (the order of targets in a group)."""
    return sorted(inds, key=lambda i: (objects[i].centre[0], objects[i].centre[1], i))


def _extreme(objects: list[DemoObject], target: int, axis: int, sign: float) -> bool:
    """True if ``target`` is the unique extreme object along ``axis`` by SPATIAL_MARGIN."""
    key = sign * objects[target].centre[axis]
    return len(objects) >= 2 and all(
        sign * o.centre[axis] - key >= SPATIAL_MARGIN for i, o in enumerate(objects) if i != target
    )


def unique_expressions(objects: list[DemoObject], target: int) -> list[str]:
    """All built-in singular expressions that pick out ``objects[target]`` and nothing else.

    Args:
        objects (list[DemoObject]): The scene's objects.
        target (int): Index of the referred object.

    Returns:
        list[str]: Candidate expressions (the first, "the <colour> <shape>", always exists).
    """
    obj = objects[target]
    others = [o for i, o in enumerate(objects) if i != target]
    same_shape = [o for o in others if o.shape == obj.shape]
    exprs = [f'the {obj.colour} {obj.shape}']
    if all(o.colour != obj.colour for o in others):
        exprs.append(f'the {obj.colour} object')
    if not same_shape:
        exprs.append(f'the {obj.shape}')
    if all(o.size != obj.size for o in same_shape):
        exprs.append(f'the {obj.size} {obj.shape}')
    if len(same_shape) == 1:
        dx = obj.centre[0] - same_shape[0].centre[0]
        dy = obj.centre[1] - same_shape[0].centre[1]
        if abs(dx) >= SPATIAL_MARGIN:
            exprs.append(f'the {obj.shape} on the {"left" if dx < 0 else "right"}')
        if abs(dy) >= SPATIAL_MARGIN:
            exprs.append(f'the {obj.shape} at the {"top" if dy < 0 else "bottom"}')
    for axis, sign, word in (
        (0, 1.0, 'leftmost'),
        (0, -1.0, 'rightmost'),
        (1, 1.0, 'topmost'),
        (1, -1.0, 'bottommost'),
    ):
        if _extreme(objects, target, axis, sign):
            exprs.append(f'the {word} object')
    if len(others) == 1:
        anchor = others[0]
        dx, dy = obj.centre[0] - anchor.centre[0], obj.centre[1] - anchor.centre[1]
        name = f'the {anchor.colour} {anchor.shape}'
        if abs(dx) >= SPATIAL_MARGIN:
            exprs.append(f'the object to the {"left" if dx < 0 else "right"} of {name}')
        if abs(dy) >= SPATIAL_MARGIN:
            exprs.append(f'the object {"above" if dy < 0 else "below"} {name}')
    return exprs


def group_expressions(objects: list[DemoObject]) -> list[tuple[str, list[int]]]:
    """Plural expressions that match two or more objects, with their matches.

    Returns:
        list[tuple[str, list[int]]]: ``(expression, instance indices)`` pairs, each with >= 2
        indices.
    """
    out: list[tuple[str, list[int]]] = []
    for colour in COLOURS:
        inds = [i for i, o in enumerate(objects) if o.colour == colour]
        if len(inds) >= 2:
            out.append((f'the {colour} objects', inds))
    for shape in SHAPES:
        inds = [i for i, o in enumerate(objects) if o.shape == shape]
        if len(inds) >= 2:
            out.append((f'all {PLURALS[shape]}', inds))
    for size in ('small', 'large'):
        inds = [i for i, o in enumerate(objects) if o.size == size]
        if len(inds) >= 2:
            out.append((f'the {size} objects', inds))
    if len(objects) >= 2:
        out.append(('all objects', list(range(len(objects)))))
    return out


def empty_expression(objects: list[DemoObject], rng: np.random.Generator) -> str:
    """An expression that matches no object (absent colour-shape pair, colour or shape)."""
    present_pairs = {(o.colour, o.shape) for o in objects}
    kind = int(rng.integers(3))
    absent_colours = [c for c in COLOURS if all(o.colour != c for o in objects)]
    absent_shapes = [s for s in SHAPES if all(o.shape != s for o in objects)]
    if kind == 1 and absent_colours:
        return f'the {absent_colours[int(rng.integers(len(absent_colours)))]} objects'
    if kind == 2 and absent_shapes:
        return f'all {PLURALS[absent_shapes[int(rng.integers(len(absent_shapes)))]]}'
    # Prefer a pair that shares the colour or the shape of a present object (a hard negative).
    pairs = [(c, s) for c in COLOURS for s in SHAPES if (c, s) not in present_pairs]
    hard = [p for p in pairs if any(p[0] == o.colour or p[1] == o.shape for o in objects)]
    pool = hard or pairs
    colour, shape = pool[int(rng.integers(len(pool)))]
    return f'the {colour} {shape}'


def _count_answer(n: int) -> str:
    return f'{NUMBER_WORDS[n].capitalize()}.'


def vqa_pair(objects: list[DemoObject], rng: np.random.Generator) -> tuple[str, str]:
    """One question about the scene and its short answer (e.g. ``'Three.'``, ``'Yes.'``).

    Question kinds (uniform; the last two fall back to the existence question when no object
    has a unique shape / colour): count all, count a colour, count a shape, existence of a
    colour-shape pair (yes or no with equal probability), colour of a unique shape, shape of a
    unique colour.
    """
    kind = int(rng.integers(6))
    if kind == 0:
        return 'How many objects are there?', _count_answer(len(objects))
    if kind == 1:
        colour = list(COLOURS)[int(rng.integers(len(COLOURS)))]
        if rng.random() < 0.7:
            colour = objects[int(rng.integers(len(objects)))].colour
        n = sum(o.colour == colour for o in objects)
        return f'How many {colour} objects are there?', _count_answer(n)
    if kind == 2:
        shape = SHAPES[int(rng.integers(len(SHAPES)))]
        if rng.random() < 0.7:
            shape = objects[int(rng.integers(len(objects)))].shape
        n = sum(o.shape == shape for o in objects)
        return f'How many {PLURALS[shape]} are there?', _count_answer(n)
    if kind == 4:
        unique = [o for o in objects if sum(p.shape == o.shape for p in objects) == 1]
        if unique:
            obj = unique[int(rng.integers(len(unique)))]
            return f'What colour is the {obj.shape}?', f'{obj.colour.capitalize()}.'
    if kind == 5:
        unique = [o for o in objects if sum(p.colour == o.colour for p in objects) == 1]
        if unique:
            obj = unique[int(rng.integers(len(unique)))]
            return f'What shape is the {obj.colour} object?', f'{obj.shape.capitalize()}.'
    if rng.random() < 0.5:
        obj = objects[int(rng.integers(len(objects)))]
        return f'Is there a {obj.colour} {obj.shape}?', 'Yes.'
    return _absent_pair_question(objects, rng)


def _absent_pair_question(objects: list[DemoObject], rng: np.random.Generator) -> tuple[str, str]:
    present = {(o.colour, o.shape) for o in objects}
    pairs = [(c, s) for c in COLOURS for s in SHAPES if (c, s) not in present]
    colour, shape = pairs[int(rng.integers(len(pairs)))]
    return f'Is there a {colour} {shape}?', 'No.'


def caption_text(objects: list[DemoObject]) -> str:
    """Plain caption listing the objects from left to right with size, colour and shape."""
    order = left_to_right(objects, list(range(len(objects))))
    names = [f'a {objects[i].size} {objects[i].colour} {objects[i].shape}' for i in order]
    if len(names) == 1:
        return f'A single object: {names[0]}.'
    listing = ', '.join(names[:-1]) + f' and {names[-1]}'
    return f'{NUMBER_WORDS[len(names)].capitalize()} objects from left to right: {listing}.'
