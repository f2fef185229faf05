# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""COCO instances (``instances_*.json``) to ``ovd`` / ``ovs`` (one record per image) and ``rec``.

Example::

    python tools/dataset_converters/coco_instances.py \\
        data/coco/annotations/instances_val2017.json --image-dir data/coco/val2017 \\
        --data-root data --out data/records/coco_val2017.jsonl --tasks ovd ovs rec

``ovd``/``ovs``: one phrase group per category present (category-id order), targets = its
instances. ``rec``: one record per (image, category) whose category has exactly one instance in the
image (the class name is then an unambiguous expression). Crowd annotations are skipped and counted.
"""

from __future__ import annotations

import argparse
import os.path as osp
import re
import sys
from collections import Counter

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))

from converter_utils import (  # noqa: E402
    CocoIndex,
    RecordWriter,
    add_common_args,
    coco_instance,
    image_entry,
    load_json,
    print_summary,
    progress,
)

from mmrefvlm.datasets.records import phrase_group, template_turn  # noqa: E402

TASKS = ('ovd', 'ovs', 'rec')


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse the command line."""
    parser = argparse.ArgumentParser(description='COCO instances -> ovd/ovs/rec records')
    parser.add_argument('ann_file', help='instances_<split>.json')
    parser.add_argument('--tasks', nargs='+', default=['ovd', 'ovs'], choices=TASKS)
    parser.add_argument(
        '--split', default=None, help='split name for ids and meta (default: from the file name)'
    )
    add_common_args(parser)
    return parser.parse_args(argv)


def split_name(ann_file: str) -> str:
    """The split of ``instances_<split>.json``, ``person_keypoints_<split>.json`` and
    ``captions_<split>.json``."""
    name = osp.basename(ann_file)
    match = re.match(r'(?:instances|person_keypoints|captions)_(.+)\.json$', name)
    return match.group(1) if match else osp.splitext(osp.basename(ann_file))[0]


def grouped_answer(names: list[str], groups: list[list[int]], unit: str) -> list:
    """``[<name 1 group>, ', ', <name 2 group>, ..., '.']``."""
    answer: list = []
    for k, (name, targets) in enumerate(zip(names, groups, strict=True)):
        if k:
            answer.append(', ')
        answer.append(phrase_group(name, [unit], targets))
    return answer + ['.']


def class_record(
    args: argparse.Namespace, index: CocoIndex, img: dict, by_cat: dict, task: str, split: str
) -> dict | None:
    """One ``ovd``/``ovs`` record: instances ordered by category, one group per category."""
    unit, instances, names, groups = ('box' if task == 'ovd' else 'mask'), [], [], []
    for cat_id in sorted(by_cat):
        insts = [i for i in by_cat[cat_id] if unit == 'box' or 'mask' in i]
        if not insts:
            continue
        names.append(index.category_name(cat_id))
        groups.append(list(range(len(instances), len(instances) + len(insts))))
        for inst in insts:
            instances.append({k: v for k, v in inst.items() if k != 'mask' or unit == 'mask'})
    if not instances:
        return None
    return {
        'id': f'coco-{split}-{img["id"]}-{task}',
        'task': task,
        'image': image_entry(args, img['file_name'], img['width'], img['height']),
        'instances': instances,
        'depth': None,
        'visual_prompts': [],
        'conversation': [
            template_turn(task),
            {'role': 'assistant', 'answer': grouped_answer(names, groups, unit)},
        ],
        'meta': {'source': 'coco', 'split': split, 'image_id': img['id']},
    }


def rec_records(
    args: argparse.Namespace,
    index: CocoIndex,
    img: dict,
    by_cat: dict,
    crowd_cats: set,
    split: str,
    skipped: Counter,
) -> list[dict]:
    """``rec`` records for the categories with exactly one (non-crowd) instance in the image."""
    out = []
    for cat_id in sorted(by_cat):
        if len(by_cat[cat_id]) != 1 or cat_id in crowd_cats:
            skipped['rec: category with several instances (ambiguous name)'] += 1
            continue
        name = index.category_name(cat_id)
        inst = {k: v for k, v in by_cat[cat_id][0].items() if k != 'mask'}
        out.append(
            {
                'id': f'coco-{split}-{img["id"]}-c{cat_id}-rec',
                'task': 'rec',
                'image': image_entry(args, img['file_name'], img['width'], img['height']),
                'instances': [inst],
                'depth': None,
                'visual_prompts': [],
                'conversation': [
                    template_turn('rec', expr=name),
                    {'role': 'assistant', 'answer': [phrase_group(name, ['box'], [0]), '.']},
                ],
                'meta': {
                    'source': 'coco',
                    'split': split,
                    'image_id': img['id'],
                    'ann_id': inst['source_id'],
                },
            }
        )
    return out


def image_records(
    args: argparse.Namespace, index: CocoIndex, img: dict, split: str, skipped: Counter
) -> list[dict]:
    """All requested records of one image."""
    by_cat: dict = {}
    crowd_cats = set()
    for ann in index.anns_by_image.get(img['id'], []):
        if ann.get('iscrowd', 0):
            skipped['crowd annotation'] += 1
            crowd_cats.add(ann['category_id'])
            continue
        inst = coco_instance(ann, img, index.category_name(ann['category_id']), skipped)
        if inst is not None:
            by_cat.setdefault(ann['category_id'], []).append(inst)
    if not by_cat:
        skipped['image without usable annotations'] += 1
        return []
    records = []
    for task in ('ovd', 'ovs'):
        if task in args.tasks:
            rec = class_record(args, index, img, by_cat, task, split)
            if rec is None:
                skipped[f'{task}: image without usable masks'] += 1
            else:
                records.append(rec)
    if 'rec' in args.tasks:
        records += rec_records(args, index, img, by_cat, crowd_cats, split, skipped)
    return records


def main(argv: list[str] | None = None) -> Counter:
    """Run the conversion; returns the skip counts (reason -> number)."""
    args = parse_args(argv)
    index = CocoIndex(load_json(args.ann_file))
    split = args.split or split_name(args.ann_file)
    skipped: Counter = Counter()
    with RecordWriter(
        args.out, validate=not args.no_validate, template_dir=args.template_dir
    ) as writer:
        for img in progress(index.images.values(), 'coco images', len(index.images)):
            for record in image_records(args, index, img, split, skipped):
                writer.write(record)
    print_summary('coco_instances', writer, skipped)
    return skipped


if __name__ == '__main__':
    main()
