# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""Turn what a user gives ``RefVLMInferencer`` (an image, a question, visual prompts, earlier
turns) into a record of docs/data_format.md that the config's test pipeline accepts.

Every error is an :class:`InferenceInputError` whose message starts with the image's name.
"""

from __future__ import annotations

import os
from collections.abc import Collection, Mapping, Sequence
from typing import Any

import numpy as np

from mmrefvlm.datasets.files import DEFAULT_MAX_PIXELS
from mmrefvlm.datasets.geometry import check_visual_prompt_geometry, encode_mask
from mmrefvlm.datasets.records import VPT_TOKEN
from mmrefvlm.datasets.transforms import read_rgb_image
from mmrefvlm.trp import iter_groups, normalize_answer, parse_answer

#: What a user writes where a visual prompt goes in the question (the pipeline's ``[VPT]``).
REGION_TOKEN = '<region>'
PROMPT_TYPES = ('point', 'box', 'scribble', 'mask')

ImageInput = str | os.PathLike | np.ndarray | Any  # Any: a PIL image (PIL is imported lazily)


class InferenceInputError(ValueError):
    """A bad input of one image (missing or unreadable file, prompt outside the image, unknown
    unit...); the message starts with the image's name."""


def image_name(image: ImageInput, index: int) -> str:
    """The name results and errors use: the path of a file, ``image_<index>`` otherwise."""
    if isinstance(image, (str, os.PathLike)):
        return os.fspath(image)
    return f'image_{index}'


def load_image(image: ImageInput, name: str, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """A path, an RGB array or a PIL image as (H, W, 3) uint8 RGB.

    Args:
        image: A file path; an (H, W) grey, (H, W, 3) RGB or (H, W, 4) RGBA uint8 array (RGB
            order, as PIL gives, not OpenCV's BGR); or a ``PIL.Image.Image``.
        name (str): The image's name for error messages.
        max_pixels (int): Largest image accepted (files are refused from their header, arrays
            and PIL images by their size). Defaults to the datasets' ``DEFAULT_MAX_PIXELS``.

    Returns:
        np.ndarray: (H, W, 3) uint8 RGB.

    Raises:
        InferenceInputError: Missing or undecodable file, or an array of another shape/dtype.
    """
    from PIL import Image

    from mmrefvlm.datasets.transforms import SampleLoadError

    if isinstance(image, (str, os.PathLike)):
        try:
            return read_rgb_image(os.fspath(image), max_pixels=max_pixels)
        except SampleLoadError as err:
            raise InferenceInputError(f'{name}: {err}') from err
    if isinstance(image, Image.Image):
        _check_pixels(image.height, image.width, name, max_pixels)
        return np.asarray(image.convert('RGB'))
    if not isinstance(image, np.ndarray):
        raise InferenceInputError(
            f'{name}: an image must be a path, a numpy array or a PIL image, '
            f'got {type(image).__name__}'
        )
    if image.dtype != np.uint8:
        raise InferenceInputError(
            f'{name}: an image array must be uint8 (0-255), got {image.dtype}'
        )
    if image.ndim in (2, 3):
        _check_pixels(image.shape[0], image.shape[1], name, max_pixels)
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=2)
    if image.ndim != 3 or image.shape[2] not in (3, 4) or 0 in image.shape[:2]:
        raise InferenceInputError(
            f'{name}: an image array must be (H, W), (H, W, 3) or (H, W, 4), got {image.shape}'
        )
    return np.ascontiguousarray(image[..., :3])


def _check_pixels(h: int, w: int, name: str, max_pixels: int) -> None:
    if h * w > max_pixels:
        raise InferenceInputError(
            f'{name}: image of {w}x{h} pixels is over max_pixels={max_pixels}'
        )


def _as_list(value: Any) -> Any:
    """Tuples and arrays (of numbers) -> nested lists of Python numbers."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (list, tuple)):
        return [_as_list(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def normalize_prompt(prompt: Any, h: int, w: int, name: str, index: int) -> dict:
    """Check one visual prompt against its image and return it in record form.

    Args:
        prompt (Mapping): ``{'type': 'point', 'point': [x, y]}``, ``{'type': 'box', 'box':
            [x1, y1, x2, y2]}``, ``{'type': 'scribble', 'scribble': [[x, y], ...]}`` or
            ``{'type': 'mask', 'mask': (H, W) bool array | COCO RLE | polygons}``, in pixels
            of the original image.
        h (int): Image height.
        w (int): Image width.
        name (str): The image's name for error messages.
        index (int): The prompt's index for error messages.

    Returns:
        dict: ``{'type', <type>: geometry (lists / RLE), 'instance': None}``.

    Raises:
        InferenceInputError: Unknown type, malformed geometry or geometry outside the image.
    """
    where = f'{name}: visual prompt {index}'
    if not isinstance(prompt, Mapping):
        raise InferenceInputError(f'{where} must be a dict with a "type", got {prompt!r}')
    kind = prompt.get('type')
    if kind not in PROMPT_TYPES:
        raise InferenceInputError(
            f'{where}: unknown type {kind!r} (expected one of {", ".join(PROMPT_TYPES)})'
        )
    if kind not in prompt:
        raise InferenceInputError(f'{where}: a {kind} prompt needs the key {kind!r}')
    geometry = prompt[kind]
    if kind == 'mask' and isinstance(geometry, np.ndarray):
        if geometry.shape != (h, w):
            raise InferenceInputError(
                f'{where}: mask of shape {geometry.shape} does not match the image ({h}, {w})'
            )
        geometry = encode_mask(geometry.astype(bool))
    else:
        geometry = _as_list(geometry)
    problem = check_visual_prompt_geometry(kind, geometry, w, h)
    if problem is not None:
        raise InferenceInputError(f'{where}: {problem}')
    return {'type': kind, kind: geometry, 'instance': None}


def place_regions(question: str, num_new: int, name: str) -> str:
    """Put the ``[VPT]`` placeholders of the new visual prompts into the question.

    ``<region>`` (or ``[VPT]``) marks where each prompt goes, in order; a question with no marker
    gets them appended (``"What is this? [VPT]"``).

    Raises:
        InferenceInputError: The question marks a number of regions other than ``num_new``.
    """
    if not isinstance(question, str) or not question.strip():
        raise InferenceInputError(f'{name}: the question must be a non-empty string')
    text = question.replace(REGION_TOKEN, VPT_TOKEN)
    found = text.count(VPT_TOKEN)
    if found == 0 and num_new:
        return text.rstrip() + ' ' + ' '.join([VPT_TOKEN] * num_new)
    if found != num_new:
        raise InferenceInputError(
            f'{name}: the question marks {found} {REGION_TOKEN} but {num_new} new visual '
            'prompts were given'
        )
    return text


def _check_units(answer: Any, units: Collection[str], where: str) -> None:
    for _, _, phrase_group, group in iter_groups(answer):
        unknown = [u for u in group['units'] if u not in units]
        if unknown:
            raise InferenceInputError(
                f'{where}: unknown unit {unknown[0]!r} in phrase {phrase_group["phrase"]!r}; '
                f'this model decodes {sorted(units)}'
            )


def normalize_history(history: Sequence[Any], units: Collection[str], name: str) -> list[dict]:
    """Earlier turns as record turns.

    Args:
        history (Sequence[Mapping]): ``{'role': 'user', 'content': str}`` (``<region>`` allowed),
            ``{'role': 'assistant', 'text': raw TRP}`` (as a result's ``text``) or ``{'role':
            'assistant', 'answer': structured answer or plain str}``, and optionally a first
            ``{'role': 'system', 'content': str}`` that replaces the task's system command.
        units (Collection[str]): The model's units; an answer naming another one is an error.
        name (str): The image's name for error messages.

    Returns:
        list[dict]: Turns in record form (``[VPT]`` for ``<region>``).
    """
    turns = []
    for i, turn in enumerate(history):
        where = f'{name}: history turn {i}'
        role = turn.get('role') if isinstance(turn, Mapping) else None
        if role in ('user', 'system'):
            content = turn.get('content')
            if not isinstance(content, str):
                raise InferenceInputError(f'{where}: a {role} turn needs "content" (str)')
            turns.append({'role': role, 'content': content.replace(REGION_TOKEN, VPT_TOKEN)})
        elif role == 'assistant':
            if 'answer' in turn:
                try:
                    answer = normalize_answer(turn['answer'])
                except ValueError as err:
                    raise InferenceInputError(f'{where}: {err}') from err
            elif isinstance(turn.get('text'), str):
                answer = parse_answer(turn['text']).answer
            else:
                raise InferenceInputError(f'{where}: an assistant turn needs "text" or "answer"')
            _check_units(answer, units, where)
            turns.append({'role': 'assistant', 'answer': answer})
        else:
            raise InferenceInputError(
                f"{where}: role must be 'user', 'assistant' or 'system', got {turn!r}"
            )
    return turns


def build_record(
    img: np.ndarray,
    name: str,
    question: str,
    prompts: Sequence[Any],
    history: Sequence[Any],
    *,
    task: str | None,
    units: Collection[str],
    path: str | None = None,
) -> dict:
    """The record the test pipeline runs on: the decoded image, the prompts, the earlier turns and
    the question as the last (open) user turn.

    ``path`` (the image file, if any) becomes the sample's ``img_path``. ``task=None`` picks
    ``'ig_box'`` when the conversation has visual prompts and ``'rec'`` otherwise (the task only
    selects the system command; see docs/inference.md).

    Raises:
        InferenceInputError: Any bad input, naming the image.
    """
    h, w = img.shape[:2]
    vps = [normalize_prompt(p, h, w, name, i) for i, p in enumerate(prompts or ())]
    turns = normalize_history(history or (), units, name)
    old = sum(t.get('content', '').count(VPT_TOKEN) for t in turns if t['role'] == 'user')
    if old > len(vps):
        raise InferenceInputError(
            f'{name}: the history marks {old} regions but only {len(vps)} visual prompts were '
            'given (pass the prompts of earlier turns too, in order)'
        )
    turns.append({'role': 'user', 'content': place_regions(question, len(vps) - old, name)})
    if task is None:
        task = 'ig_box' if vps else 'rec'
    return dict(
        id=name,
        task=task,
        image=dict(path=path, width=w, height=h),
        img=img,
        instances=[],
        depth=None,
        visual_prompts=vps,
        conversation=turns,
        data_root='',
        sample_idx=0,
    )
