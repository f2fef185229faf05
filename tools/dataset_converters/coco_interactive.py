# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""COCO-Interactive (PSALM's ``coco_interactive_*_psalm.json``) to ``ig_box`` / ``ig_mask``.

Example::

    python tools/dataset_converters/coco_interactive.py \\
        data/coco_interactive/coco_interactive_val_psalm.json --image-dir data/coco/val2017 \\
        --data-root data --out data/records/cocoint_val.jsonl --tasks ig_box ig_mask

The source is a list of images ``{"image", "image_info": {"height", "width"}, "new_img_id",
"anns": [...]}``; each annotation has the object (``category_id``, ``segmentation``) and four
pre-rasterised prompts as RLE masks: ``point_visual_prompt_mask``, ``box_visual_prompt_mask``,
``scribble_visual_prompt_mask``, ``mask_visual_prompt_mask``. One record is written per object,
prompt type and task, with one ``visual_prompts`` entry (the ``[VPT]`` is in the ig templates):

* point: centre of the prompt pixels; box: tight box of the prompt pixels; mask: the RLE as is;
* scribble: the prompt pixels ordered into a polyline (greedy nearest neighbour from an end, then
  at most ``--scribble-points`` points), or with ``--scribble-format mask`` the RLE as a mask
  prompt.

The target box is the tight box of the object mask (the file's ``bbox`` is read as xywh by REF-VLM
and as xyxy by PSALM, so it is not trusted). Crowd objects and empty prompts are skipped and
counted.
"""

from __future__ import annotations

import argparse
import os.path as osp
import re
import sys
from collections import Counter

import numpy as np

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))

from converter_utils import (  # noqa: E402
    RecordWriter,
    add_common_args,
    coco_mask,
    image_entry,
    load_json,
    print_summary,
    progress,
    round_bbox,
)

from mmrefvlm.datasets.geometry import decode_mask, mask_bbox  # noqa: E402
from mmrefvlm.datasets.records import phrase_group, template_turn  # noqa: E402

PROMPT_TYPES = ('point', 'box', 'scribble', 'mask')
#: COCO category ids and names (the 80 "things" classes), used when no --categories file is given.
COCO_IDS = [
    *range(1, 12),
    *range(13, 26),
    27,
    28,
    *range(31, 45),
    *range(46, 66),
    67,
    70,
    *range(72, 83),
    *range(84, 91),
]
COCO_NAMES = (
    'person,bicycle,car,motorcycle,airplane,bus,train,truck,boat,traffic light,fire hydrant,'
    'stop sign,parking meter,bench,bird,cat,dog,horse,sheep,cow,elephant,bear,zebra,giraffe,'
    'backpack,umbrella,handbag,tie,suitcase,frisbee,skis,snowboard,sports ball,kite,baseball bat,'
    'baseball glove,skateboard,surfboard,tennis racket,bottle,wine glass,cup,fork,knife,spoon,'
    'bowl,banana,apple,sandwich,orange,broccoli,carrot,hot dog,pizza,donut,cake,chair,couch,'
    'potted plant,bed,dining table,toilet,tv,laptop,mouse,remote,keyboard,cell phone,microwave,'
    'oven,toaster,sink,refrigerator,book,clock,vase,scissors,teddy bear,hair drier,toothbrush'
).split(',')


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse the command line."""
    parser = argparse.ArgumentParser(description='COCO-Interactive -> ig_box/ig_mask records')
    parser.add_argument('ann_file', help='coco_interactive_<split>_psalm.json')
    parser.add_argument(
        '--tasks',
        nargs='+',
        default=['ig_box', 'ig_mask'],
        choices=['ig_box', 'ig_mask', 'reg'],
        help='reg: describe the prompted object (the answer is its class name, as text)',
    )
    parser.add_argument(
        '--prompt-types', nargs='+', default=list(PROMPT_TYPES), choices=PROMPT_TYPES
    )
    parser.add_argument('--scribble-format', default='polyline', choices=['polyline', 'mask'])
    parser.add_argument(
        '--scribble-points',
        type=int,
        default=24,
        help='most points of a scribble polyline (default 24)',
    )
    parser.add_argument(
        '--categories',
        default=None,
        help='a COCO json whose "categories" name the category ids '
        '(default: the built-in COCO-80 table)',
    )
    parser.add_argument('--split', default=None, help='split name (default: from the file name)')
    add_common_args(parser)
    return parser.parse_args(argv)


def order_polyline(points: np.ndarray, max_points: int) -> list[list[float]]:
    """Order scattered scribble pixels into a polyline and subsample it.

    Args:
        points (np.ndarray): (N, 2) float, x y pixel centres.
        max_points (int): Most points kept (evenly spaced along the order, ends included).

    Returns:
        list[list[float]]: The polyline, ``[[x, y], ...]``.
    """
    if len(points) > 4096:  # bound the O(N^2) walk
        points = points[np.linspace(0, len(points) - 1, 4096).round().astype(int)]
    # Start from the pixel farthest from the centroid: an end of the stroke.
    current = int(np.argmax(((points - points.mean(0)) ** 2).sum(1)))
    remaining = np.ones(len(points), bool)
    order = []
    for _ in range(len(points)):
        order.append(current)
        remaining[current] = False
        if not remaining.any():
            break
        dist = ((points - points[current]) ** 2).sum(1)
        dist[~remaining] = np.inf
        current = int(np.argmin(dist))
    num = min(max_points, len(order))
    keep = np.unique(np.linspace(0, len(order) - 1, num).round().astype(int))
    return [[round(float(x), 2), round(float(y), 2)] for x, y in points[np.asarray(order)[keep]]]


def visual_prompt(kind: str, rle: dict, height: int, width: int, args) -> dict | None:
    """A record visual prompt from a rasterised PSALM prompt mask (None if empty / malformed)."""
    rle = coco_mask(rle, width, height) if isinstance(rle, dict) else None
    if rle is None:
        return None
    if kind == 'mask' or (kind == 'scribble' and args.scribble_format == 'mask'):
        return {'type': 'mask', 'mask': rle, 'instance': 0}
    ys, xs = np.nonzero(decode_mask(rle, height, width))
    points = np.stack([xs + 0.5, ys + 0.5], 1)
    if kind == 'point':
        x, y = points.mean(0)
        return {'type': 'point', 'point': [round(float(x), 2), round(float(y), 2)], 'instance': 0}
    if kind == 'box':
        return {'type': 'box', 'box': mask_bbox(rle, height, width), 'instance': 0}
    line = order_polyline(points, args.scribble_points)
    return {'type': 'scribble', 'scribble': line, 'instance': 0} if len(line) >= 2 else None


def entry_records(
    args: argparse.Namespace, entry: dict, k: int, names: dict, split: str, skipped: Counter
) -> list:
    """The records of one source image (per object, prompt type and task)."""
    info = entry.get('image_info') or {}
    height, width = info.get('height'), info.get('width')
    image = image_entry(args, entry['image'], width, height)
    image_id, out = entry.get('new_img_id', k), []
    for a, ann in enumerate(entry.get('anns', [])):
        if ann.get('iscrowd', 0):
            skipped['crowd annotation'] += 1
            continue
        mask = coco_mask(ann.get('segmentation'), width, height)
        box = round_bbox(mask_bbox(mask, height, width), width, height) if mask else None
        if mask is None or box is None:
            skipped['object without a usable mask'] += 1
            continue
        name = names.get(ann.get('category_id'), str(ann.get('category_id')))
        target = {'bbox': box, 'mask': mask, 'category': name, 'source_id': ann.get('id')}
        for kind in args.prompt_types:
            prompt = visual_prompt(kind, ann.get(f'{kind}_visual_prompt_mask'), height, width, args)
            if prompt is None:
                skipped[f'empty or malformed {kind} prompt'] += 1
                continue
            for task in args.tasks:
                unit = {'ig_box': 'box', 'ig_mask': 'mask'}.get(task)
                answer = name if unit is None else [phrase_group(name, [unit], [0])]
                out.append(
                    {
                        'id': f'cocoint-{split}-{image_id}-a{a}-{kind}-{task}',
                        'task': task,
                        'image': image,
                        'depth': None,
                        'visual_prompts': [prompt],
                        'instances': [
                            {k: v for k, v in target.items() if k != 'mask' or unit == 'mask'}
                        ],
                        'conversation': [
                            template_turn(task),
                            {'role': 'assistant', 'answer': answer},
                        ],
                        'meta': {
                            'source': 'coco_interactive',
                            'split': split,
                            'image_id': image_id,
                            'ann_index': a,
                            'ann_id': ann.get('id'),
                            'prompt_type': kind,
                        },
                    }
                )
    return out


def main(argv: list[str] | None = None) -> Counter:
    """Run the conversion; returns the skip counts (reason -> number)."""
    args = parse_args(argv)
    if args.scribble_points < 2:
        raise ValueError(f'--scribble-points must be >= 2, got {args.scribble_points}')
    data = load_json(args.ann_file)
    if not isinstance(data, list):
        raise ValueError(f'{args.ann_file}: expected a list of images, got {type(data).__name__}')
    names = dict(zip(COCO_IDS, COCO_NAMES, strict=True))
    if args.categories:
        names = {c['id']: c['name'] for c in load_json(args.categories)['categories']}
    match = re.search(r'coco_interactive_(.+?)(?:_psalm)?\.json$', osp.basename(args.ann_file))
    split = args.split or (match.group(1) if match else 'all')
    skipped: Counter = Counter()
    with RecordWriter(
        args.out, validate=not args.no_validate, template_dir=args.template_dir
    ) as writer:
        for k, entry in enumerate(progress(data, 'coco-interactive images')):
            for record in entry_records(args, entry, k, names, split, skipped):
                writer.write(record)
    print_summary('coco_interactive', writer, skipped)
    return skipped


if __name__ == '__main__':
    main()
