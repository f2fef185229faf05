# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""NYU-Depth-v2 (BTS / Depth-Anything style file lists) to ``depth`` records.

Example::

    python tools/dataset_converters/nyu_depth.py data/nyu/nyudepthv2_test_files_with_gt.txt \\
        --rgb-root data/nyu/official_splits/test --depth-root data/nyu/official_splits/test \\
        --data-root data --out data/records/nyu_test.jsonl

Each list line is ``<rgb path> <depth path> <focal>`` (paths relative to ``--rgb-root`` /
``--depth-root``, a leading ``/`` allowed, as in BTS's ``nyudepthv2_*_files_with_gt.txt``). Depth
maps are 16-bit PNGs in millimetres, so records carry ``depth = {"path", "scale": 0.001,
"format": "png16"}``. The image size is read from the RGB file header; lines whose depth is
``None``, whose files are missing, or whose depth map is not a 16-bit PNG of the image size are
skipped and counted.
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
    image_size,
    print_summary,
    progress,
    relative_path,
)

from mmrefvlm.datasets.geometry import check_depth_file  # noqa: E402
from mmrefvlm.datasets.records import phrase_group, template_turn  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse the command line."""
    parser = argparse.ArgumentParser(description='NYU-Depth-v2 file list -> depth records')
    parser.add_argument('file_list', help='text file of "<rgb> <depth> <focal>" lines')
    parser.add_argument('--rgb-root', required=True, help='folder the RGB paths are relative to')
    parser.add_argument(
        '--depth-root', default=None, help='folder of the depth paths (default: --rgb-root)'
    )
    parser.add_argument(
        '--depth-scale',
        type=float,
        default=0.001,
        help='metres per stored depth unit (default 0.001: millimetre PNGs)',
    )
    parser.add_argument('--split', default=None, help='split name (default: from the list name)')
    add_common_args(parser, image_dir=False)
    return parser.parse_args(argv)


def line_record(
    args: argparse.Namespace, line: str, lineno: int, split: str, skipped: Counter
) -> dict | None:
    """The record of one list line, or None (the reason is counted)."""
    parts = line.split()
    if len(parts) < 2:
        skipped['malformed list line'] += 1
        return None
    rgb_rel, depth_rel = parts[0].lstrip('/'), parts[1].lstrip('/')
    if depth_rel == 'None':
        skipped['line without ground-truth depth'] += 1
        return None
    rgb = osp.join(args.rgb_root, rgb_rel)
    depth = osp.join(args.depth_root or args.rgb_root, depth_rel)
    if not osp.isfile(rgb):
        skipped['missing RGB file'] += 1
        return None
    width, height = image_size(rgb)
    err = check_depth_file(depth, 'png16', width, height)
    if err is not None:
        skipped['missing depth file, not a 16-bit PNG, or size mismatch'] += 1
        return None
    meta = {'source': 'nyu_depth_v2', 'split': split, 'line': lineno}
    if len(parts) > 2:
        try:
            meta['focal'] = float(parts[2])
        except ValueError:
            pass
    stem = osp.splitext(rgb_rel)[0].replace('/', '_')
    return {
        'id': f'nyu-{split}-{stem}',
        'task': 'depth',
        'image': {
            'path': relative_path(args.rgb_root, rgb_rel, args.data_root),
            'width': width,
            'height': height,
        },
        'instances': [],
        'visual_prompts': [],
        'depth': {
            'path': relative_path(args.depth_root or args.rgb_root, depth_rel, args.data_root),
            'scale': args.depth_scale,
            'format': 'png16',
        },
        'conversation': [
            template_turn('depth'),
            {'role': 'assistant', 'answer': [phrase_group('depth map', ['depth'], [None])]},
        ],
        'meta': meta,
    }


def main(argv: list[str] | None = None) -> Counter:
    """Run the conversion; returns the skip counts (reason -> number)."""
    args = parse_args(argv)
    if not args.depth_scale > 0:
        raise ValueError(f'--depth-scale must be > 0, got {args.depth_scale}')
    with open(args.file_list, encoding='utf-8') as f:
        lines = [(k, line) for k, line in enumerate(f, 1) if line.strip()]
    split = args.split or osp.splitext(osp.basename(args.file_list))[0]
    skipped: Counter = Counter()
    seen: set[str] = set()
    with RecordWriter(
        args.out, validate=not args.no_validate, template_dir=args.template_dir
    ) as writer:
        for lineno, line in progress(lines, 'nyu pairs'):
            record = line_record(args, line, lineno, split, skipped)
            if record is not None and record['id'] in seen:
                skipped['duplicate list line'] += 1
            elif record is not None:
                seen.add(record['id'])
                writer.write(record)
    print_summary('nyu_depth', writer, skipped)
    return skipped


if __name__ == '__main__':
    main()
