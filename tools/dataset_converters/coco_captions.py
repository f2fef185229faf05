# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""COCO Captions (``captions_<split>.json``) to ``caption`` records.

Example::

    python tools/dataset_converters/coco_captions.py \\
        data/coco/annotations/captions_train2017.json \\
        --image-dir data/coco/train2017 --data-root data --out data/vt_instruct/coco/cap.jsonl

One record per caption (COCO has about five per image), id ``coco-cap-<split>-<image_id>-<ann_id>``;
the answer is the caption as plain text (whitespace collapsed, a final full stop added when it has
none). Image sizes come from the json; the images are not read.
"""

from __future__ import annotations

import argparse
import os.path as osp
import sys
from collections import Counter

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))

from coco_instances import split_name  # noqa: E402
from converter_utils import (  # noqa: E402
    CocoIndex,
    RecordWriter,
    add_common_args,
    image_entry,
    load_json,
    print_summary,
    progress,
)

from mmrefvlm.datasets.records import template_turn  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse the command line."""
    parser = argparse.ArgumentParser(description='COCO Captions -> caption records')
    parser.add_argument('ann_file', help='captions_<split>.json')
    parser.add_argument('--split', default=None, help='split name (default: from the file name)')
    add_common_args(parser)
    return parser.parse_args(argv)


def clean_caption(text: str) -> str:
    """Whitespace collapsed, first letter upper-case, ending with a full stop ('' if empty)."""
    text = ' '.join(str(text).split())
    if not text:
        return ''
    text = text[0].upper() + text[1:]
    return text if text[-1] in '.!?' else text + '.'


def caption_record(args, index: CocoIndex, ann: dict, split: str, skipped: Counter) -> dict | None:
    """The record of one caption annotation (None, counted, when unusable)."""
    img = index.images.get(ann.get('image_id'))
    if img is None:
        skipped['caption of an image missing from "images"'] += 1
        return None
    caption = clean_caption(ann.get('caption', ''))
    if not caption:
        skipped['empty caption'] += 1
        return None
    return {
        'id': f'coco-cap-{split}-{img["id"]}-{ann["id"]}',
        'task': 'caption',
        'image': image_entry(args, img['file_name'], img['width'], img['height']),
        'instances': [],
        'depth': None,
        'visual_prompts': [],
        'conversation': [template_turn('caption'), {'role': 'assistant', 'answer': caption}],
        'meta': {'source': 'coco_captions', 'split': split, 'image_id': img['id']},
    }


def main(argv: list[str] | None = None) -> Counter:
    """Run the conversion; returns the skip counts (reason -> number)."""
    args = parse_args(argv)
    data = load_json(args.ann_file)
    index = CocoIndex(data)
    split = args.split or split_name(args.ann_file)
    skipped: Counter = Counter()
    with RecordWriter(
        args.out, validate=not args.no_validate, template_dir=args.template_dir
    ) as writer:
        anns = data.get('annotations', [])
        for ann in progress(anns, 'coco captions', len(anns)):
            record = caption_record(args, index, ann, split, skipped)
            if record is not None:
                writer.write(record)
    print_summary('coco_captions', writer, skipped)
    return skipped


if __name__ == '__main__':
    main()
