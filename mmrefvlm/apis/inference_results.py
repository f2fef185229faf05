# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""``RefVLMDataSample`` predictions -> the plain result dicts of ``RefVLMInferencer``, and their
files (``<stem>.json``, ``<stem>.png``, depth maps)."""

from __future__ import annotations

import json
import os
import os.path as osp
from typing import Any

import numpy as np
from torch import Tensor

from mmrefvlm.datasets.geometry import encode_mask
from mmrefvlm.trp import answer_text, strip_trp

#: ``pred_instances`` field -> result key and converter; any other tensor field (a plugin unit's)
#: keeps its name and becomes nested lists.
_FIELDS: dict[str, tuple[str, Any]] = {
    'bboxes': ('bbox', lambda v: [round(float(x), 2) for x in v]),
    'masks': ('mask', lambda v: encode_mask(v.astype(bool))),
    'keypoints': ('keypoints', lambda v: [[round(float(x), 3) for x in p] for p in v]),
    'depth': ('depth', lambda v: v.astype(np.float32)),
    'scores': ('score', lambda v: round(float(v), 4)),
}
DEPTH_SCALE = 0.001  # depth PNGs: uint16 value * 0.001 = metres (as docs/data_format.md)


def _plain_answer(sample: Any) -> str:
    answer = sample.get('pred_answer')
    if answer is not None:
        try:
            return answer_text(answer)
        except ValueError:  # a recovered answer the builder does not accept: strip the text
            pass
    return strip_trp(str(sample.get('pred_text', '')))


def instances_to_list(pred: Any) -> list[dict]:
    """``pred_instances`` -> one dict per referred object (``<REF>`` x unit).

    Each dict has ``phrase``, ``unit``, ``group`` and the fields its unit produced: ``bbox``
    ([x1, y1, x2, y2] pixels), ``mask`` (COCO RLE), ``keypoints`` ([[x, y, score], ...]),
    ``depth`` ((H, W) float32 metres), ``score``, or a plugin field as nested lists.
    """
    if pred is None or not len(pred.get('labels', [])):
        return []
    fields_of = pred.get('unit_fields') or [tuple(k for k in pred.keys()) for _ in pred.labels]
    out = []
    for i, (phrase, unit) in enumerate(zip(pred.labels, pred.units, strict=True)):
        entry: dict[str, Any] = {'phrase': phrase, 'unit': unit, 'group': int(pred.group_ids[i])}
        for field in fields_of[i]:
            value = pred.get(field)
            if not isinstance(value, Tensor) or field == 'group_ids':
                continue
            arr = value[i].detach().cpu().numpy()
            key, convert = _FIELDS.get(field, (field, lambda v: v.tolist()))
            entry[key] = convert(arr)
        out.append(entry)
    return out


def sample_to_result(sample: Any, name: str, question: str) -> dict:
    """One predicted ``RefVLMDataSample`` as the inferencer's result dict.

    Returns:
        dict: ``image`` (name), ``task``, ``question`` (as sent, ``[VPT]`` for each visual
        prompt), ``text`` (raw TRP answer), ``answer`` (plain text), ``instances``
        (:func:`instances_to_list`) and ``warnings`` (list[str]).
    """
    return dict(
        image=name,
        task=sample.metainfo.get('task'),
        question=question,
        text=str(sample.get('pred_text', '')),
        answer=_plain_answer(sample),
        instances=instances_to_list(sample.get('pred_instances')),
        warnings=list(sample.get('warnings', [])),
    )


def _jsonable(result: dict, out_dir: str, stem: str) -> dict:
    """A copy of ``result`` without arrays: depth maps go to ``<stem>_depth<i>.png`` (uint16,
    value * 0.001 = metres, clipped to 65.535 m) and are replaced by ``{path, scale, format}``."""
    from PIL import Image

    out = {k: v for k, v in result.items() if k != 'vis'}
    instances = []
    for i, inst in enumerate(result.get('instances', [])):
        inst = dict(inst)
        depth = inst.get('depth')
        if isinstance(depth, np.ndarray):
            fname = f'{stem}_depth{i}.png'
            mm = np.clip(np.nan_to_num(depth) / DEPTH_SCALE, 0, 65535).round().astype(np.uint16)
            Image.fromarray(mm).save(osp.join(out_dir, fname))
            inst['depth'] = {'path': fname, 'scale': DEPTH_SCALE, 'format': 'png16'}
        instances.append(inst)
    out['instances'] = instances
    return out


def unique_stem(name: str, used: set[str]) -> str:
    """Output file stem of an image: ``photo`` for ``a/photo.jpg``, ``photo_1`` when ``used``
    already holds ``photo`` (which it then does); ``used`` is updated."""
    base = osp.splitext(osp.basename(name))[0] or 'image'
    stem, k = base, 1
    while stem in used:
        stem, k = f'{base}_{k}', k + 1
    used.add(stem)
    return stem


def save_result(result: dict, img: np.ndarray | None, out_dir: str, stem: str) -> tuple[str, str]:
    """Write ``<out_dir>/<stem>.json`` (the result; depth maps as PNG files beside it) and
    ``<out_dir>/<stem>.png`` (the overlay, :func:`mmrefvlm.visualization.draw_answer`).

    Args:
        result (dict): A result of ``RefVLMInferencer`` (``vis`` is used when present).
        img (np.ndarray, optional): (H, W, 3) uint8 RGB image of the result, for the overlay
            when the result has no ``vis``.
        out_dir (str): Output folder (created).
        stem (str): File name without extension.

    Returns:
        tuple[str, str]: The JSON and PNG paths.
    """
    from PIL import Image

    from mmrefvlm.visualization import draw_answer

    os.makedirs(out_dir, exist_ok=True)
    json_path, png_path = osp.join(out_dir, f'{stem}.json'), osp.join(out_dir, f'{stem}.png')
    with open(json_path, 'w', encoding='utf-8') as f:
        json.dump(_jsonable(result, out_dir, stem), f, indent=1)
    vis = result.get('vis')
    if vis is None:
        if img is None:
            raise ValueError(f'{result.get("image")}: no overlay (vis) and no image to draw on')
        vis = draw_answer(img, result)
    Image.fromarray(vis).save(png_path)
    return json_path, png_path
