# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""Write the embedded demo dataset to disk (images, depth maps, one JSONL file per split and task).

Layout under ``out_dir``::

    images/<split>/<idx:06d>.png       RGB uint8, sizes from ``image_sizes``
    depth/<split>/<idx:06d>.png        uint16, value * 0.001 = metres (only with the depth task)
    references/<split>/<idx:06d>_<task>.{png,wav}   exemplar images / sounds (opt-in tasks)
    annotations/<split>_<task>.jsonl   records of docs/data_format.md, one per image
    metainfo.json                      classes, colours, keypoint names, version, seed, counts

Randomness: image ``idx`` of a split is drawn from ``default_rng([seed, split_id, idx, 1])`` and
its sample of task ``t`` from ``default_rng([seed, split_id, idx, 100 + t])`` (``t`` = position in
:data:`ALL_DEMO_TASKS`: the default :data:`DEMO_TASKS`, then the opt-in reference tasks), so
outputs are byte-identical for equal arguments, and image ``i`` and its samples do not change when
the number of images or the task subset changes.
"""

from __future__ import annotations

import json
import os
import os.path as osp
import time
from collections.abc import Sequence

import numpy as np
from mmengine.logging import print_log
from PIL import Image

from .references import REFERENCE_TASKS, reference_sample
from .samples import DEMO_TASKS, SAMPLE_BUILDERS
from .scene import (
    BACKGROUND_DEPTH_MM,
    COLOURS,
    DEPTH_SCALE,
    KEYPOINT_NAMES,
    OBJECT_DEPTH_MM,
    SHAPES,
    SIZES,
    DemoScene,
    sample_scene,
)

GENERATOR_VERSION = '1.0'
SPLIT_IDS: dict[str, int] = {'train': 0, 'val': 1}
DEFAULT_IMAGE_SIZES: tuple[tuple[int, int], ...] = ((64, 64), (64, 48), (48, 64))
#: Every task the generator can write, in RNG-stream order: the default tasks, then the opt-in
#: ones (appended, so no existing task's samples change).
ALL_DEMO_TASKS: tuple[str, ...] = DEMO_TASKS + REFERENCE_TASKS


def encode_rle(mask: np.ndarray) -> dict:
    """COCO compressed RLE ``{'size': [h, w], 'counts': str}`` of a (H, W) bool mask."""
    from pycocotools import mask as mask_utils

    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {'size': [int(v) for v in rle['size']], 'counts': rle['counts'].decode('ascii')}


def _check_args(
    seed: int,
    num_images: dict[str, int],
    tasks: Sequence[str],
    image_sizes: Sequence[Sequence[int]],
) -> None:
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f'seed must be a non-negative int, got {seed!r}')
    for split, num in num_images.items():
        if isinstance(num, bool) or not isinstance(num, int) or num < 0:
            raise ValueError(f'number of {split} images must be a non-negative int, got {num!r}')
    unknown = [t for t in tasks if t not in ALL_DEMO_TASKS]
    if unknown or not tasks or len(set(tasks)) != len(tasks):
        raise ValueError(f'tasks must be distinct names from {ALL_DEMO_TASKS}, got {list(tasks)!r}')
    if not image_sizes:
        raise ValueError('image_sizes must not be empty')
    for size in image_sizes:
        if len(size) != 2 or min(size) < 32 or max(size) > 4096:
            raise ValueError(f'each image size must be (width, height) in [32, 4096], got {size!r}')


def _instances(scene: DemoScene) -> tuple[list[dict], list[dict]]:
    rles = [encode_rle(o.mask) for o in scene.objects]
    instances = [
        {'bbox': list(o.bbox), 'mask': rle, 'category': o.shape, 'keypoints': list(o.keypoints)}
        for o, rle in zip(scene.objects, rles, strict=True)
    ]
    return instances, rles


def _save_png(array: np.ndarray, path: str) -> None:
    Image.fromarray(array).save(path, format='PNG', compress_level=6)


def _render_images(
    out_dir: str,
    split: str,
    indices: range,
    seed: int,
    tasks: Sequence[str],
    image_sizes: Sequence[Sequence[int]],
) -> tuple[dict[str, list[str]], int]:
    """Draw and save the images (and depth maps) ``indices`` of a split.

    Returns:
        tuple: the JSONL lines of each task for these images (in image order), and their number
        of object instances.
    """
    split_id = SPLIT_IDS[split]
    lines: dict[str, list[str]] = {t: [] for t in tasks}
    num_instances = 0
    for idx in indices:
        rng = np.random.default_rng([seed, split_id, idx, 1])
        width, height = (int(v) for v in image_sizes[int(rng.integers(len(image_sizes)))])
        scene = sample_scene(rng, width, height)
        num_instances += len(scene.objects)
        img_rel = f'images/{split}/{idx:06d}.png'
        depth_rel = f'depth/{split}/{idx:06d}.png'
        _save_png(scene.image, osp.join(out_dir, img_rel))
        if 'depth' in tasks:
            _save_png(scene.depth_mm, osp.join(out_dir, depth_rel))
        instances, rles = _instances(scene)
        meta = {
            'source': 'demo',
            'split': split,
            'image_idx': idx,
            'attributes': [[o.colour, o.shape, o.size] for o in scene.objects],
        }
        for task in tasks:
            task_id = 100 + ALL_DEMO_TASKS.index(task)
            task_rng = np.random.default_rng([seed, split_id, idx, task_id])
            references = None
            if task in REFERENCE_TASKS:
                prompts = []
                stem = f'references/{split}/{idx:06d}_{task}'
                conversation, references, files = reference_sample(
                    task, scene.objects, task_rng, stem
                )
                for rel, content in files.items():
                    with open(osp.join(out_dir, rel), 'wb') as f:
                        f.write(content)
            else:
                conversation, prompts = SAMPLE_BUILDERS[task](
                    scene.objects, rles, (width, height), task_rng
                )
            record = {
                'id': f'demo-{split}-{idx:06d}-{task}',
                'task': task,
                'image': {'path': img_rel, 'width': width, 'height': height},
                'instances': instances,
                'depth': (
                    {'path': depth_rel, 'scale': DEPTH_SCALE, 'format': 'png16'}
                    if task == 'depth'
                    else None
                ),
                'visual_prompts': prompts,
                'conversation': conversation,
                'meta': meta,
            }
            if references is not None:
                record['references'] = references
            lines[task].append(json.dumps(record, separators=(',', ':')) + '\n')
    return lines, num_instances


#: Images per work item when several processes generate (small enough to balance the load).
CHUNK_IMAGES = 250


def _write_split(
    out_dir: str,
    split: str,
    num_images: int,
    seed: int,
    tasks: Sequence[str],
    image_sizes: Sequence[Sequence[int]],
    workers: int = 1,
) -> dict:
    """Write one split (``workers`` processes draw chunks of images; the parent writes the JSONL
    files in image order, so the output does not depend on ``workers``); return its statistics
    for ``metainfo.json``."""
    os.makedirs(osp.join(out_dir, 'images', split), exist_ok=True)
    if 'depth' in tasks:
        os.makedirs(osp.join(out_dir, 'depth', split), exist_ok=True)
    if any(t in REFERENCE_TASKS for t in tasks):
        os.makedirs(osp.join(out_dir, 'references', split), exist_ok=True)
    os.makedirs(osp.join(out_dir, 'annotations'), exist_ok=True)
    chunks = [
        range(i, min(i + CHUNK_IMAGES, num_images)) for i in range(0, num_images, CHUNK_IMAGES)
    ]
    args = [(out_dir, split, c, seed, tasks, image_sizes) for c in chunks]
    if workers > 1 and len(chunks) > 1:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor

        # spawn: the caller may already run torch (autograd or CUDA threads), which fork breaks
        with ProcessPoolExecutor(min(workers, len(chunks)), mp.get_context('spawn')) as pool:
            results = list(pool.map(_render_images, *zip(*args, strict=True)))
    else:
        results = [_render_images(*a) for a in args]
    for task in tasks:
        path = osp.join(out_dir, 'annotations', f'{split}_{task}.jsonl')
        with open(path, 'w', encoding='utf-8', newline='\n') as f:
            for lines, _ in results:
                f.writelines(lines[task])
    num_instances = sum(n for _, n in results)
    return {
        'num_images': num_images,
        'num_instances': num_instances,
        'num_samples': {t: num_images for t in tasks},
    }


def generate_demo_dataset(
    out_dir: str,
    *,
    seed: int = 0,
    num_train_images: int = 1500,
    num_val_images: int = 200,
    tasks: Sequence[str] = DEMO_TASKS,
    image_sizes: Sequence[Sequence[int]] = DEFAULT_IMAGE_SIZES,
    workers: int = 1,
) -> dict:
    """Generate the demo dataset deterministically under ``out_dir``.

    Args:
        out_dir (str): Output folder (created; existing files of the same names are overwritten,
            other files are left alone).
        seed (int): Dataset seed (>= 0). Default 0.
        num_train_images (int): Images of the ``train`` split. Default 1500.
        num_val_images (int): Images of the ``val`` split. Default 200.
        tasks (Sequence[str]): Tasks to write, a subset of :data:`ALL_DEMO_TASKS`. Default
            :data:`DEMO_TASKS` (every task of the record format; the reference tasks are opt-in).
        image_sizes (Sequence[Sequence[int]]): ``(width, height)`` choices, one drawn per image.
            Default ``((64, 64), (64, 48), (48, 64))``.
        workers (int): Processes that draw images (chunks of :data:`CHUNK_IMAGES`); the files are
            byte-identical for any value. Default 1 (this process).

    Returns:
        dict: The content written to ``metainfo.json``.
    """
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f'workers must be a positive int, got {workers!r}')
    num_images = {'train': num_train_images, 'val': num_val_images}
    _check_args(seed, num_images, tasks, image_sizes)
    tasks = [t for t in ALL_DEMO_TASKS if t in tasks]  # canonical order
    start = time.perf_counter()
    os.makedirs(out_dir, exist_ok=True)
    splits = {
        split: _write_split(out_dir, split, num, seed, tasks, image_sizes, workers)
        for split, num in num_images.items()
    }
    metainfo = expected_metainfo(seed, num_images, tasks, image_sizes)
    metainfo['splits'] = splits
    with open(osp.join(out_dir, 'metainfo.json'), 'w', encoding='utf-8', newline='\n') as f:
        json.dump(metainfo, f, indent=2)
        f.write('\n')
    print_log(
        f'demo dataset: {sum(num_images.values())} images x {len(tasks)} tasks written to '
        f'{out_dir} in {time.perf_counter() - start:.1f}s',
        logger='current',
    )
    return metainfo


def expected_metainfo(
    seed: int,
    num_images: dict[str, int],
    tasks: Sequence[str],
    image_sizes: Sequence[Sequence[int]],
) -> dict:
    """The argument-dependent part of ``metainfo.json`` (without the per-split statistics)."""
    return {
        'generator': 'mmrefvlm.datasets.demo',
        'version': GENERATOR_VERSION,
        'seed': seed,
        'classes': list(SHAPES),
        'colours': {k: list(v) for k, v in COLOURS.items()},
        'sizes': {k: list(v) for k, v in SIZES.items()},
        'keypoint_names': list(KEYPOINT_NAMES),
        'depth_scale': DEPTH_SCALE,
        'depth_ranges_mm': {
            'background_top_bottom': list(BACKGROUND_DEPTH_MM),
            **{k: list(v) for k, v in OBJECT_DEPTH_MM.items()},
        },
        'image_sizes': [[int(w), int(h)] for w, h in image_sizes],
        'tasks': list(tasks),
        'num_images': dict(num_images),
    }


def ensure_demo_dataset(out_dir: str, **kwargs) -> dict:
    """Generate the demo dataset unless ``out_dir`` already holds one made with these arguments
    (or with the same arguments and more tasks: a dataset with the opt-in reference tasks serves
    configs that ask for the default tasks too).

    Args:
        out_dir (str): Dataset folder.
        **kwargs: Arguments of :func:`generate_demo_dataset`.

    Returns:
        dict: The dataset's ``metainfo.json`` content.
    """
    seed = kwargs.get('seed', 0)
    num_images = {
        'train': kwargs.get('num_train_images', 1500),
        'val': kwargs.get('num_val_images', 200),
    }
    tasks = kwargs.get('tasks', DEMO_TASKS)
    image_sizes = kwargs.get('image_sizes', DEFAULT_IMAGE_SIZES)
    _check_args(seed, num_images, tasks, image_sizes)
    want = expected_metainfo(
        seed, num_images, [t for t in ALL_DEMO_TASKS if t in tasks], image_sizes
    )
    path = osp.join(out_dir, 'metainfo.json')
    if osp.isfile(path):
        with open(path, encoding='utf-8') as f:
            have = json.load(f)
        same = all(have.get(k) == v for k, v in want.items() if k != 'tasks')
        if same and set(want['tasks']) <= set(have.get('tasks') or ()):
            return have
    return generate_demo_dataset(out_dir, **kwargs)
