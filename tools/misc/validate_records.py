# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""Check JSONL record files against docs/data_format.md.

Example::

    python tools/misc/validate_records.py data/refcoco_val.jsonl --data-root data/ --max-errors 20

Prints one line per error (``file:line id=... field=...: message``), a summary per file and in
total, and exits with status 1 if any record is invalid.
"""

from __future__ import annotations

import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))

from mmrefvlm.datasets.files import DEFAULT_MAX_PIXELS  # noqa: E402
from mmrefvlm.datasets.records import TEMPLATE_DIR, load_template_sets, validate_file  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse the command line."""
    parser = argparse.ArgumentParser(description='Validate mmrefvlm JSONL records.')
    parser.add_argument('files', nargs='+', metavar='FILE.jsonl', help='record files')
    parser.add_argument(
        '--data-root',
        default=None,
        help='check that image and depth paths resolve inside this folder and their files '
        '(headers) are valid',
    )
    parser.add_argument(
        '--max-errors',
        type=int,
        default=50,
        help='print at most N errors in total (all are counted; 0 = none)',
    )
    parser.add_argument(
        '--template-dir',
        default=TEMPLATE_DIR,
        help='folder of template sets <name>.json (default: the packaged ones)',
    )
    parser.add_argument(
        '--units', nargs='+', default=None, help='allowed unit names (default: any)'
    )
    parser.add_argument(
        '--allow-outside-data-root',
        action='store_true',
        help='accept absolute paths and paths leaving --data-root (the dataset switch '
        'allow_outside_data_root); default: refused',
    )
    parser.add_argument(
        '--allow-open-turn',
        action='store_true',
        help='accept conversations ending with a user turn (records for predict mode only)',
    )
    parser.add_argument(
        '--special-tokens',
        nargs='+',
        default=(),
        help="the tokenizer's special-token strings, refused in text like the common ones",
    )
    parser.add_argument(
        '--max-pixels',
        type=int,
        default=DEFAULT_MAX_PIXELS,
        help="pixel limit of image and depth files (the loaders' max_pixels)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Validate the files; returns the exit status (1 if any error)."""
    args = parse_args(argv)
    if args.max_errors < 0:
        raise ValueError(f'--max-errors must be >= 0, got {args.max_errors}')
    sets = load_template_sets(args.template_dir)
    if not sets:
        print(
            f'warning: no template sets in {args.template_dir}; template references are not '
            'checked',
            file=sys.stderr,
        )
    budget, totals = args.max_errors, [0, 0, 0]
    for path in args.files:
        if not osp.isfile(path):
            print(f'{path}: file not found')
            totals[2] += 1
            continue
        report = validate_file(
            path,
            data_root=args.data_root,
            template_sets=sets,
            known_units=args.units,
            max_errors=budget,
            allow_outside_data_root=args.allow_outside_data_root,
            allow_open_turn=args.allow_open_turn,
            special_tokens=args.special_tokens,
            max_pixels=args.max_pixels,
        )
        for error in report.errors:
            line = error.line if error.line is not None else '?'
            print(
                f'{path}:{line} id={error.record_id or "?"} field={error.field or "<record>"}: '
                f'{error.message}'
            )
        budget -= len(report.errors)
        print(
            f'{path}: {report.num_records} records, {report.num_invalid} invalid, '
            f'{report.num_errors} errors'
        )
        totals = [
            totals[0] + report.num_records,
            totals[1] + report.num_invalid,
            totals[2] + report.num_errors,
        ]
    if len(args.files) > 1:
        print(f'total: {totals[0]} records, {totals[1]} invalid, {totals[2]} errors')
    if totals[2] > args.max_errors:
        print(f'({totals[2] - args.max_errors} more errors not shown; raise --max-errors)')
    return 1 if totals[2] else 0


if __name__ == '__main__':
    sys.exit(main())
