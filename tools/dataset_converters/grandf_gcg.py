# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""GranD-f / GLaMM GCG annotations to ``gcg_mask`` records (caption with mask-grounded phrases).

Example::

    python tools/dataset_converters/grandf_gcg.py \\
        data/GranDf/annotations/train/GranDf_HA_GCG_train.json \\
        --image-dir data/GranDf/GranDf_HA_images/train --data-root data \\
        --out data/records/grandf_ha_train.jsonl

Two layouts (``--layout auto`` picks by shape):

* ``groundings`` (``GranDf_HA_GCG_*.json``, ``OpenPsgGCG_*.json``): a list of
  ``{"file_name", "caption", "groundings": {phrase: {"token_positives": [start, end],
  "rle_masks": [RLE, ...]}}}`` with character offsets into the caption; the masks of a phrase are
  merged into one (GLaMM does the same), so each phrase is a group with n = 1.
* ``coco`` (``flickr_mergedGT_GCG_*.json``): COCO json whose images carry ``caption`` and whose
  annotations carry ``tokens_positive`` (character spans, the first is used) and ``sam_mask`` (RLE);
  annotations sharing a span form one group with n = their number.

Spans that do not match their phrase are searched for in the caption; spans that overlap an earlier
one, phrases not found and empty masks are dropped and counted.
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
    coco_mask,
    image_entry,
    load_json,
    print_summary,
    progress,
)

from mmrefvlm.datasets.geometry import decode_mask, encode_mask, mask_bbox  # noqa: E402
from mmrefvlm.datasets.records import phrase_group, template_turn  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse the command line."""
    parser = argparse.ArgumentParser(description='GranD-f / GLaMM GCG -> gcg_mask records')
    parser.add_argument(
        'ann_file', help='GranDf_HA_GCG_*.json, OpenPsgGCG_*.json, flickr_mergedGT_GCG_*.json'
    )
    parser.add_argument('--layout', default='auto', choices=['auto', 'groundings', 'coco'])
    parser.add_argument(
        '--source', default=None, help='source name for ids/meta (default: the file name stem)'
    )
    add_common_args(parser)
    return parser.parse_args(argv)


def clean_caption(caption: str) -> tuple[str, int]:
    """Strip surrounding quotes and spaces (as GLaMM); returns (caption, removed prefix length)."""
    stripped = caption.strip().strip('"').strip()
    return stripped, caption.find(stripped) if stripped else 0


def resolve_spans(
    caption: str, phrases: list[tuple[str, list]], skipped: Counter
) -> list[tuple[int, int, int]]:
    """Character spans ``(start, end, item)`` in ``caption`` of ``(phrase, [start, end])`` items,
    sorted and non-overlapping. A span is trusted when the text under it equals the phrase
    (ignoring case and surrounding spaces); otherwise the phrase is searched for."""
    spans = []
    for item, (phrase, span) in enumerate(phrases):
        start = end = -1
        if isinstance(span, list) and len(span) == 2 and all(isinstance(v, int) for v in span):
            start, end = span
        if not (
            0 <= start < end <= len(caption)
            and caption[start:end].strip().lower() == phrase.strip().lower()
        ):
            found = caption.lower().find(phrase.strip().lower()) if phrase.strip() else -1
            if found < 0:
                skipped['phrase not found in its caption'] += 1
                continue
            skipped['span relocated by searching the phrase'] += 1
            start, end = found, found + len(phrase.strip())
        while start < end and caption[start].isspace():  # phrases never start/end with spaces
            start += 1
        while end > start and caption[end - 1].isspace():
            end -= 1
        spans.append((start, end, item))
    spans.sort()
    kept = []
    for span in spans:
        if kept and span[0] < kept[-1][1]:
            skipped['phrase overlapping an earlier phrase'] += 1
            continue
        kept.append(span)
    return kept


def caption_answer(caption: str, spans: list[tuple[int, int, list[int]]]) -> list:
    """Caption text with a mask phrase group at each ``(start, end, targets)`` span."""
    answer, pos = [], 0
    for start, end, targets in spans:
        if start > pos:
            answer.append(caption[pos:start])
        answer.append(phrase_group(caption[start:end], ['mask'], targets))
        pos = end
    if pos < len(caption):
        answer.append(caption[pos:])
    return answer


def shifted_span(span, shift: int) -> list[int] | None:
    """``[start - shift, end - shift]`` of a well-formed ``[start, end]`` span, else None."""
    if isinstance(span, list) and len(span) == 2 and all(isinstance(v, int) for v in span):
        return [span[0] - shift, span[1] - shift]
    return None


def merged_instance(rles: list, height: int, width: int, phrase: str) -> dict | None:
    """One instance whose mask is the union of ``rles`` (None if empty or malformed)."""
    union = None
    for rle in rles:
        mask = coco_mask(rle, width, height)
        if mask is None:
            continue
        decoded = decode_mask(mask, height, width)
        union = decoded if union is None else union | decoded
    if union is None or not union.any():
        return None
    mask = encode_mask(union)
    return {'bbox': mask_bbox(mask, height, width), 'mask': mask, 'category': phrase}


def record(
    args: argparse.Namespace,
    rid: str,
    file_name: str,
    size: tuple[int, int],
    caption: str,
    instances: list,
    spans: list,
    meta: dict,
) -> dict:
    """One ``gcg_mask`` record."""
    return {
        'id': rid,
        'task': 'gcg_mask',
        'image': image_entry(args, file_name, *size),
        'instances': instances,
        'depth': None,
        'visual_prompts': [],
        'conversation': [
            template_turn('gcg_mask'),
            {'role': 'assistant', 'answer': caption_answer(caption, spans)},
        ],
        'meta': meta,
    }


def groundings_records(args: argparse.Namespace, entries: list, source: str, skipped: Counter):
    """Records of the ``groundings`` layout."""
    for k, entry in enumerate(progress(entries, f'{source} captions')):
        caption, shift = clean_caption(entry.get('caption', ''))
        groundings = entry.get('groundings') or {}
        rles = [r for g in groundings.values() for r in g.get('rle_masks', [])]
        height = entry.get('height') or (rles[0]['size'][0] if rles else None)
        width = entry.get('width') or (rles[0]['size'][1] if rles else None)
        if not caption or not groundings or not height:
            skipped['caption without groundings'] += 1
            continue
        values = list(groundings.values())
        items = [
            (phrase, shifted_span(g.get('token_positives'), shift))
            for phrase, g in groundings.items()
        ]
        spans, instances = [], []
        for start, end, item in resolve_spans(caption, items, skipped):
            phrase, g = items[item][0], values[item]
            inst = merged_instance(g.get('rle_masks', []), height, width, phrase)
            if inst is None:
                skipped['phrase with an empty or malformed mask'] += 1
                continue
            spans.append((start, end, [len(instances)]))
            instances.append(inst)
        if not spans:
            skipped['caption without usable phrases'] += 1
            continue
        stem = osp.splitext(osp.basename(entry['file_name']))[0]
        yield record(
            args,
            f'{source}-{k}-{stem}',
            entry['file_name'],
            (width, height),
            caption,
            instances,
            spans,
            {'source': source, 'index': k, 'file_name': entry['file_name']},
        )


def coco_records(args: argparse.Namespace, coco: dict, source: str, skipped: Counter):
    """Records of the ``coco`` layout (flickr_mergedGT_GCG)."""
    index = CocoIndex(coco)
    for img in progress(index.images.values(), f'{source} images', len(index.images)):
        caption, shift = clean_caption(img.get('caption', ''))
        by_span: dict[tuple, list[dict]] = {}
        for ann in index.anns_by_image.get(img['id'], []):
            tokens = ann.get('tokens_positive') or [None]
            span = shifted_span(tokens[0], shift)
            if ann.get('ignore', False) or span is None:
                skipped['ignored annotation or annotation without a span'] += 1
                continue
            inst = coco_instance(
                dict(ann, segmentation=ann.get('sam_mask')), img, 'object', skipped, need_mask=True
            )
            if inst is not None:
                by_span.setdefault(tuple(span), []).append(inst)
        items = [(caption[s:e] if 0 <= s < e <= len(caption) else '', [s, e]) for s, e in by_span]
        spans, instances = [], []
        for start, end, item in resolve_spans(caption, items, skipped):
            insts = list(by_span.values())[item]
            for inst in insts:
                inst['category'] = caption[start:end]
            spans.append((start, end, list(range(len(instances), len(instances) + len(insts)))))
            instances += insts
        if not spans:
            skipped['caption without usable phrases'] += 1
            continue
        yield record(
            args,
            f'{source}-{img["id"]}',
            img['file_name'],
            (img['width'], img['height']),
            caption,
            instances,
            spans,
            {'source': source, 'image_id': img['id']},
        )


def main(argv: list[str] | None = None) -> Counter:
    """Run the conversion; returns the skip counts (reason -> number)."""
    args = parse_args(argv)
    data = load_json(args.ann_file)
    layout = args.layout
    if layout == 'auto':
        layout = 'coco' if isinstance(data, dict) and 'annotations' in data else 'groundings'
    if layout == 'groundings' and not isinstance(data, list):
        raise ValueError(f'{args.ann_file}: the groundings layout is a list of captions')
    source = args.source or osp.splitext(osp.basename(args.ann_file))[0]
    skipped: Counter = Counter()
    records = (
        groundings_records(args, data, source, skipped)
        if layout == 'groundings'
        else coco_records(args, data, source, skipped)
    )
    with RecordWriter(
        args.out, validate=not args.no_validate, template_dir=args.template_dir
    ) as writer:
        for rec in records:
            writer.write(rec)
    print_summary('grandf_gcg', writer, skipped)
    return skipped


if __name__ == '__main__':
    main()
