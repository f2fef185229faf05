# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""LLaVA instruction data (``llava_v1_5_mix665k.json`` and its LLaVA-Instruct relatives) to
``vqa`` records.

Example::

    python tools/dataset_converters/llava_instruct.py data/llava/llava_v1_5_mix665k.json \\
        --image-dir data/llava --data-root data --out data/vt_instruct/llava/vqa.jsonl

Source: a JSON list of ``{"id", "image" (optional, relative to --image-dir), "conversations":
[{"from": "human" | "gpt", "value": str}, ...]}``. One record per entry, id
``llava-<id>``: the turns as literal text (``<image>`` kept where LLaVA put it), the answers as
plain text; an entry without ``image`` becomes a text-only record (``image: null``). The image
size is read from the file header (no pixels are decoded), so the images must be in place.

Skipped and counted: entries whose image file is missing, conversations that do not alternate
human/gpt starting with human, empty turns, and turns with more than one ``<image>``.
"""

from __future__ import annotations

import argparse
import os.path as osp
import sys
from collections import Counter

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))

from converter_utils import (  # noqa: E402
    RecordWriter,
    add_common_args,
    image_entry,
    image_size,
    load_json,
    print_summary,
    progress,
)

_ROLES = {'human': 'user', 'gpt': 'assistant'}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse the command line."""
    parser = argparse.ArgumentParser(description='LLaVA instruction data -> vqa records')
    parser.add_argument('ann_file', help='llava_v1_5_mix665k.json (or another LLaVA json)')
    parser.add_argument('--source', default='llava', help='meta.source (default llava)')
    add_common_args(parser)
    return parser.parse_args(argv)


def conversation(turns: list, skipped: Counter) -> list | None:
    """LLaVA turns as record turns (None, counted, when malformed)."""
    out = []
    for k, turn in enumerate(turns):
        role = _ROLES.get(turn.get('from'))
        text = str(turn.get('value', '')).strip()
        if role is None or role != ('user' if k % 2 == 0 else 'assistant'):
            skipped['conversation not alternating human/gpt'] += 1
            return None
        if not text:
            skipped['empty turn'] += 1
            return None
        out.append(
            {'role': 'user', 'content': text} if role == 'user' else {'role': role, 'answer': text}
        )
    if not out or out[-1]['role'] != 'assistant':
        skipped['conversation not alternating human/gpt'] += 1
        return None
    if sum(t.get('content', '').count('<image>') for t in out) > 1:
        skipped['more than one <image>'] += 1
        return None
    return out


def entry_record(args, entry: dict, skipped: Counter) -> dict | None:
    """The record of one LLaVA entry (None, counted, when unusable)."""
    turns = conversation(entry.get('conversations') or [], skipped)
    if turns is None:
        return None
    image = None
    if entry.get('image'):
        folder = args.image_dir if args.image_dir is not None else args.data_root
        path = osp.join(folder, entry['image'])
        if not osp.isfile(path):
            skipped['image file missing'] += 1
            return None
        width, height = image_size(path)
        image = image_entry(args, entry['image'], width, height)
    else:  # text-only: no placeholder for an image that is not there
        for t in turns:
            if 'content' in t:
                t['content'] = t['content'].replace('<image>', '').strip()
    return {
        'id': f'llava-{entry.get("id")}',
        'task': 'vqa',
        'image': image,
        'instances': [],
        'depth': None,
        'visual_prompts': [],
        'conversation': turns,
        'meta': {'source': args.source, 'source_id': entry.get('id')},
    }


def main(argv: list[str] | None = None) -> Counter:
    """Run the conversion; returns the skip counts (reason -> number)."""
    args = parse_args(argv)
    data = load_json(args.ann_file)
    if not isinstance(data, list):
        raise ValueError(f'{args.ann_file}: expected a list of entries, got {type(data).__name__}')
    skipped: Counter = Counter()
    with RecordWriter(
        args.out, validate=not args.no_validate, template_dir=args.template_dir
    ) as writer:
        for entry in progress(data, 'llava entries', len(data)):
            record = entry_record(args, entry, skipped)
            if record is not None:
                writer.write(record)
    print_summary('llava_instruct', writer, skipped)
    return skipped


if __name__ == '__main__':
    main()
