# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""COCO keypoints (``person_keypoints_*.json``) to ``keypoint`` records, one per image.

Example::

    python tools/dataset_converters/coco_keypoints.py \\
        data/coco/annotations/person_keypoints_val2017.json --image-dir data/coco/val2017 \\
        --data-root data --out data/records/coco_kpt_val2017.jsonl

Targets are the (non-crowd) objects with at least one labelled keypoint (v > 0); the answer has one
phrase group per keypoint category (``person`` for COCO, K = 17).
"""

from __future__ import annotations

import argparse
import os.path as osp
import sys
from collections import Counter

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))

from coco_instances import grouped_answer, split_name  # noqa: E402
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

from mmrefvlm.datasets.records import template_turn  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse the command line."""
    parser = argparse.ArgumentParser(description='COCO keypoints -> keypoint records')
    parser.add_argument('ann_file', help='person_keypoints_<split>.json')
    parser.add_argument('--split', default=None, help='split name (default: from the file name)')
    add_common_args(parser)
    return parser.parse_args(argv)


def keypoint_instance(ann: dict, img: dict, index: CocoIndex, skipped: Counter) -> dict | None:
    """Instance with bbox + keypoints, or None (crowd, no labelled keypoint, bad K, bad box)."""
    if ann.get('iscrowd', 0):
        skipped['crowd annotation'] += 1
        return None
    cat = index.categories.get(ann['category_id'], {})
    num_kpts = len(cat.get('keypoints', [])) or len(ann.get('keypoints', [])) // 3
    kpts = ann.get('keypoints') or []
    if len(kpts) != 3 * num_kpts or num_kpts == 0:
        skipped['annotation with a keypoint count different from its category'] += 1
        return None
    if not any(v > 0 for v in kpts[2::3]):
        skipped['object without labelled keypoints'] += 1
        return None
    inst = coco_instance(ann, img, index.category_name(ann['category_id']), skipped)
    if inst is None:
        return None
    inst.pop('mask', None)
    inst['keypoints'] = [float(v) if k % 3 < 2 else int(v) for k, v in enumerate(kpts)]
    return inst


def image_record(
    args: argparse.Namespace, index: CocoIndex, img: dict, split: str, skipped: Counter
) -> dict | None:
    """The ``keypoint`` record of one image, or None (the reason is counted)."""
    by_cat: dict = {}
    for ann in index.anns_by_image.get(img['id'], []):
        inst = keypoint_instance(ann, img, index, skipped)
        if inst is not None:
            by_cat.setdefault(ann['category_id'], []).append(inst)
    if not by_cat:
        skipped['image without labelled objects'] += 1
        return None
    instances, names, groups = [], [], []
    for cat_id in sorted(by_cat):
        names.append(index.category_name(cat_id))
        groups.append(list(range(len(instances), len(instances) + len(by_cat[cat_id]))))
        instances += by_cat[cat_id]
    return {
        'id': f'coco-kpt-{split}-{img["id"]}',
        'task': 'keypoint',
        'image': image_entry(args, img['file_name'], img['width'], img['height']),
        'instances': instances,
        'depth': None,
        'visual_prompts': [],
        'conversation': [
            template_turn('keypoint'),
            {'role': 'assistant', 'answer': grouped_answer(names, groups, 'keypoint')},
        ],
        'meta': {'source': 'coco_keypoints', 'split': split, 'image_id': img['id']},
    }


def main(argv: list[str] | None = None) -> Counter:
    """Run the conversion; returns the skip counts (reason -> number)."""
    args = parse_args(argv)
    index = CocoIndex(load_json(args.ann_file))
    split = args.split or split_name(args.ann_file)
    skipped: Counter = Counter()
    with RecordWriter(
        args.out, validate=not args.no_validate, template_dir=args.template_dir
    ) as writer:
        for img in progress(index.images.values(), 'coco keypoint images', len(index.images)):
            record = image_record(args, index, img, split, skipped)
            if record is not None:
                writer.write(record)
    print_summary('coco_keypoints', writer, skipped)
    return skipped


if __name__ == '__main__':
    main()
