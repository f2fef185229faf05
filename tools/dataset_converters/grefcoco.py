# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""gRefCOCO (``grefs(unc).json`` + ``instances.json``) to ``gres`` records, one per sentence.

Example::

    python tools/dataset_converters/grefcoco.py data/grefcoco/grefs\\(unc\\).json \\
        data/grefcoco/instances.json --split val --image-dir data/coco/train2014 --data-root data \\
        --out data/records/grefcoco_val.jsonl

A ref's ``ann_id`` is an int or a list; ``[-1]`` (or ``no_target: true``) means no target and gives
a group with ``n = 0``. Crowd target annotations are dropped as in the ReLA loader (counted); a ref
whose targets are all unusable is skipped (counted) rather than turned into a "no target" sample.
"""

from __future__ import annotations

import argparse
import os.path as osp
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
from refcoco import sentence_text  # noqa: E402

from mmrefvlm.datasets.records import phrase_group, template_turn  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse the command line."""
    parser = argparse.ArgumentParser(description='gRefCOCO -> gres records')
    parser.add_argument('grefs', help='grefs(unc).json')
    parser.add_argument('instances', help='the instances.json next to it')
    parser.add_argument('--split', default=None, help='keep refs of this split (default all)')
    add_common_args(parser)
    return parser.parse_args(argv)


def ref_targets(ref: dict, img: dict, index: CocoIndex, skipped: Counter) -> list[dict] | None:
    """Target instances of a ref ([] for no target), or None when the ref must be skipped."""
    ann_ids = ref.get('ann_id')
    ann_ids = list(dict.fromkeys(ann_ids if isinstance(ann_ids, list) else [ann_ids]))
    if ref.get('no_target') or ann_ids == [-1]:
        return []
    targets = []
    for ann_id in ann_ids:
        ann = index.anns.get(ann_id)
        if ann is None:
            skipped['ref with an annotation missing from instances.json'] += 1
            return None
        if ann.get('iscrowd', 0):
            skipped['crowd target annotation (dropped)'] += 1
            continue
        inst = coco_instance(
            ann, img, index.category_name(ann['category_id']), skipped, need_mask=True
        )
        if inst is not None:
            targets.append(inst)
    if not targets:
        skipped['ref whose targets are all unusable'] += 1
        return None
    return targets


def ref_records(
    args: argparse.Namespace, ref: dict, index: CocoIndex, skipped: Counter
) -> list[dict]:
    """The ``gres`` records of every sentence of one ref."""
    img = index.images.get(ref.get('image_id'))
    if img is None:
        skipped['ref whose image is missing from instances.json'] += 1
        return []
    targets = ref_targets(ref, img, index, skipped)
    if targets is None:
        return []
    split, out = ref.get('split', 'all'), []
    image = image_entry(args, img['file_name'], img['width'], img['height'])
    for sent in ref.get('sentences', []):
        text = sentence_text(sent)
        if not text:
            skipped['empty sentence'] += 1
            continue
        out.append(
            {
                'id': f'grefcoco-{split}-{ref["ref_id"]}-s{sent.get("sent_id")}',
                'task': 'gres',
                'image': image,
                'instances': targets,
                'depth': None,
                'visual_prompts': [],
                'conversation': [
                    template_turn('gres', expr=text),
                    {
                        'role': 'assistant',
                        'answer': [phrase_group(text, ['mask'], list(range(len(targets)))), '.'],
                    },
                ],
                'meta': {
                    'source': 'grefcoco',
                    'split': split,
                    'ref_id': ref['ref_id'],
                    'sent_id': sent.get('sent_id'),
                    'image_id': ref['image_id'],
                    'ann_ids': [t['source_id'] for t in targets],
                    'no_target': not targets,
                },
            }
        )
    return out


def main(argv: list[str] | None = None) -> Counter:
    """Run the conversion; returns the skip counts (reason -> number)."""
    args = parse_args(argv)
    refs = load_json(args.grefs)
    if not isinstance(refs, list):
        raise ValueError(f'{args.grefs}: expected a list of refs, got {type(refs).__name__}')
    index = CocoIndex(load_json(args.instances))
    skipped: Counter = Counter()
    with RecordWriter(
        args.out, validate=not args.no_validate, template_dir=args.template_dir
    ) as writer:
        for ref in progress(refs, 'grefcoco refs'):
            if args.split is not None and ref.get('split') != args.split:
                continue
            for record in ref_records(args, ref, index, skipped):
                writer.write(record)
    print_summary('grefcoco', writer, skipped)
    return skipped


if __name__ == '__main__':
    main()
