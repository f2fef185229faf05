# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""Flickr30k Entities (``Sentences/*.txt`` + ``Annotations/*.xml``) to ``gcg_box`` records.

Example::

    python tools/dataset_converters/flickr30k_entities.py data/flickr30k_entities \\
        --split-file data/flickr30k_entities/test.txt --image-dir data/flickr30k/flickr30k-images \\
        --data-root data --out data/records/flickr30k_test.jsonl

One record per sentence: the caption (markup removed, tokens as in the source) with a phrase group
for each ``[/EN#<id>/<type> phrase]`` whose entity has boxes (n = its number of boxes). Phrases of
entities without a box (``notvisual``, ``nobndbox``, ``scene``) stay plain text. XML boxes are
1-based inclusive pixel indices; ``[xmin - 1, ymin - 1, xmax, ymax]`` is the covered pixel area.
"""

from __future__ import annotations

import argparse
import os
import os.path as osp
import sys
import xml.etree.ElementTree as ET
from collections import Counter

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))

from converter_utils import (  # noqa: E402
    RecordWriter,
    add_common_args,
    image_entry,
    print_summary,
    progress,
    round_bbox,
)

from mmrefvlm.datasets.records import phrase_group, template_turn  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse the command line."""
    parser = argparse.ArgumentParser(description='Flickr30k Entities -> gcg_box records')
    parser.add_argument('entities_root', help='folder with Annotations/ and Sentences/')
    parser.add_argument(
        '--split-file',
        default=None,
        help='train.txt / val.txt / test.txt (image ids); default: every xml',
    )
    parser.add_argument(
        '--split',
        default=None,
        help='split name for ids/meta (default: the split file stem, or "all")',
    )
    parser.add_argument('--image-ext', default='.jpg', help='image file extension (default .jpg)')
    add_common_args(parser)
    return parser.parse_args(argv)


def parse_sentence(line: str) -> list:
    """Tokens of one annotated sentence: ``str`` words and ``(entity_id, types, words)`` phrases.

    ``[/EN#18/people A child] in`` gives ``[('18', ['people'], ['A', 'child']), 'in']``.
    """
    items, current = [], None
    for token in line.split():
        if current is None and token.startswith('[/EN#'):
            parts = token[1:].split('/')  # ['', 'EN#18', 'people', ...]
            current = (parts[1][3:], parts[2:], [])
            continue
        if current is not None:
            closing = token.endswith(']')
            current[2].append(token[:-1] if closing else token)
            if closing:
                items.append(current)
                current = None
        else:
            items.append(token)
    if current is not None:  # unterminated phrase: keep its words as text
        items.extend(current[2])
    return items


def parse_annotation(path: str) -> tuple[int, int, list[list[float]], dict[str, list[int]]]:
    """(width, height, boxes, entity id -> box indices) of one XML file (xyxy, 0-based)."""
    root = ET.parse(path).getroot()
    size = root.find('size')
    width, height = int(size.find('width').text), int(size.find('height').text)
    boxes, by_entity = [], {}
    for obj in root.findall('object'):
        box = obj.find('bndbox')
        if box is None:
            continue
        coords = [int(float(box.find(k).text)) for k in ('xmin', 'ymin', 'xmax', 'ymax')]
        index = len(boxes)
        boxes.append([coords[0] - 1, coords[1] - 1, coords[2], coords[3]])
        for name in obj.findall('name'):
            by_entity.setdefault(name.text.strip(), []).append(index)
    return width, height, boxes, by_entity


def sentence_answer(
    items: list, boxes: list, by_entity: dict, size: tuple[int, int], skipped: Counter
) -> tuple[list, list[dict], list[str]]:
    """(answer segments, instances, grounded entity ids) of one parsed sentence."""
    answer, instances, used, entities, text = [], [], {}, [], ''
    for item in items:
        sep = ' ' if (text or answer) else ''
        if isinstance(item, str):
            text += sep + item
            continue
        entity, types, words = item
        targets = []
        for b in by_entity.get(entity, []) if entity != '0' else []:
            if b not in used:
                box = round_bbox(boxes[b], *size)
                if box is None:
                    skipped['degenerate box'] += 1
                    used[b] = None
                else:
                    used[b] = len(instances)
                    instances.append(
                        {
                            'bbox': box,
                            'category': types[0] if types else 'other',
                            'source_id': f'{entity}/{b}',
                        }
                    )
            if used[b] is not None:
                targets.append(used[b])
        if not targets:
            text += sep + ' '.join(words)
            continue
        if text or sep:
            answer.append(text + sep)
        answer.append(phrase_group(' '.join(words), ['box'], targets))
        entities.append(entity)
        text = ''
    if text:
        answer.append(text)
    return answer, instances, entities


def image_records(
    args: argparse.Namespace, image_id: str, split: str, skipped: Counter
) -> list[dict]:
    """The records of one image (one per usable sentence)."""
    root = args.entities_root
    ann_path = osp.join(root, 'Annotations', f'{image_id}.xml')
    sen_path = osp.join(root, 'Sentences', f'{image_id}.txt')
    if not (osp.isfile(ann_path) and osp.isfile(sen_path)):
        skipped['image without Annotations/ or Sentences/ file'] += 1
        return []
    width, height, boxes, by_entity = parse_annotation(ann_path)
    image = image_entry(args, image_id + args.image_ext, width, height)
    with open(sen_path, encoding='utf-8') as f:
        lines = [line for line in f.read().split('\n') if line.strip()]
    out = []
    for k, line in enumerate(lines):
        answer, instances, entities = sentence_answer(
            parse_sentence(line), boxes, by_entity, (width, height), skipped
        )
        if not entities:
            skipped['sentence without a boxed phrase'] += 1
            continue
        out.append(
            {
                'id': f'flickr30k-{split}-{image_id}-s{k}',
                'task': 'gcg_box',
                'image': image,
                'instances': instances,
                'depth': None,
                'visual_prompts': [],
                'conversation': [template_turn('gcg_box'), {'role': 'assistant', 'answer': answer}],
                'meta': {
                    'source': 'flickr30k_entities',
                    'split': split,
                    'image_id': image_id,
                    'sentence_index': k,
                    'entity_ids': entities,
                },
            }
        )
    return out


def main(argv: list[str] | None = None) -> Counter:
    """Run the conversion; returns the skip counts (reason -> number)."""
    args = parse_args(argv)
    if args.split_file:
        with open(args.split_file, encoding='utf-8') as f:
            image_ids = [line.strip() for line in f if line.strip()]
        split = args.split or osp.splitext(osp.basename(args.split_file))[0]
    else:
        image_ids = sorted(
            osp.splitext(n)[0]
            for n in os.listdir(osp.join(args.entities_root, 'Annotations'))
            if n.endswith('.xml')
        )
        split = args.split or 'all'
    skipped: Counter = Counter()
    with RecordWriter(
        args.out, validate=not args.no_validate, template_dir=args.template_dir
    ) as writer:
        for image_id in progress(image_ids, 'flickr30k images'):
            for record in image_records(args, image_id, split, skipped):
                writer.write(record)
    print_summary('flickr30k_entities', writer, skipped)
    return skipped


if __name__ == '__main__':
    main()
