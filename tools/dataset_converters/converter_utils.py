# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""Shared pieces of the dataset converters: CLI arguments, paths, the record writer, COCO helpers.

Every converter writes docs/data_format.md records, one JSON object per line, validates each one
with :func:`mmrefvlm.datasets.records.validate_record` before writing it (a converter bug stops the
run with the record and field), and prints what it skipped and why.
"""

from __future__ import annotations

import argparse
import json
import os
import os.path as osp
import sys
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from typing import Any

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))

from tqdm import tqdm  # noqa: E402

from mmrefvlm.datasets.geometry import check_mask, clean_polygons, clip_bbox, xywh_to_xyxy  # noqa: E402
from mmrefvlm.datasets.records import load_template_sets, validate_record  # noqa: E402


def add_common_args(parser: argparse.ArgumentParser, *, image_dir: bool = True) -> None:
    """``--out``, ``--data-root``, ``--image-dir`` (unless ``image_dir=False``), ``--no-validate``,
    ``--template-dir``."""
    parser.add_argument('--out', required=True, help='output JSONL file')
    parser.add_argument(
        '--data-root',
        default='.',
        help='image (and depth) paths are written relative to this folder',
    )
    if image_dir:
        parser.add_argument(
            '--image-dir',
            default=None,
            help='folder of the images (default: --data-root), inside --data-root; '
            'used to build relative paths (images are not read)',
        )
    parser.add_argument(
        '--no-validate', action='store_true', help='do not validate each record before writing it'
    )
    parser.add_argument(
        '--template-dir',
        default=None,
        help='template sets used to validate (default: the packaged ones)',
    )


def relative_path(folder: str, file_name: str, data_root: str) -> str:
    """``folder/file_name`` relative to ``data_root``, with ``/`` separators.

    Raises:
        ValueError: The file is not inside ``data_root``.
    """
    full = osp.normpath(osp.join(osp.abspath(folder), file_name))
    rel = osp.relpath(full, osp.abspath(data_root))
    if rel == '..' or rel.startswith('..' + os.sep) or osp.isabs(rel):
        raise ValueError(
            f'{full} is not inside --data-root {data_root}; records store paths '
            'relative to the data root'
        )
    return rel.replace(os.sep, '/')


def image_entry(args: argparse.Namespace, file_name: str, width: int, height: int) -> dict:
    """The record ``image`` field of ``<image-dir>/<file_name>``."""
    folder = args.image_dir if args.image_dir is not None else args.data_root
    return {
        'path': relative_path(folder, file_name, args.data_root),
        'width': int(width),
        'height': int(height),
    }


def image_size(path: str) -> tuple[int, int]:
    """(width, height) from the file header (PIL reads no pixels)."""
    from PIL import Image

    with Image.open(path) as im:
        return im.size


def progress(iterable: Iterable, desc: str, total: int | None = None) -> Iterator:
    """A tqdm progress bar on stderr (silent when stderr is not a terminal)."""
    return tqdm(iterable, desc=desc, total=total, disable=None, dynamic_ncols=True)


def load_json(path: str) -> Any:
    """Read a JSON file."""
    with open(path, encoding='utf-8') as f:
        return json.load(f)


def round_bbox(box: list[float], width: int, height: int, ndigits: int = 3) -> list[float] | None:
    """Round an xyxy box to ``ndigits`` and clip it to the image; None if nothing is left."""
    return clip_bbox([round(float(v), ndigits) for v in box], width, height)


class RecordWriter:
    """Writes records as JSONL, validating each and counting them per task.

    Args:
        path (str): Output file (its folder is created).
        validate (bool): Validate each record first; an invalid record raises ``ValueError``.
        template_dir (str, optional): Template sets for validation (default: the packaged ones).
    """

    def __init__(self, path: str, *, validate: bool = True, template_dir: str | None = None):
        self.path, self.validate = path, validate
        self.template_sets = load_template_sets(template_dir) if validate else {}
        self.tasks: Counter = Counter()
        self._ids: set[str] = set()
        self._file = None

    def __enter__(self) -> RecordWriter:
        folder = osp.dirname(osp.abspath(self.path))
        os.makedirs(folder, exist_ok=True)
        self._file = open(self.path, 'w', encoding='utf-8')
        return self

    def __exit__(self, *exc) -> None:
        self._file.close()

    def write(self, record: dict) -> None:
        """Validate (unless disabled) and append one record."""
        if record['id'] in self._ids:
            raise ValueError(f'duplicate record id {record["id"]!r}')
        if self.validate:
            errors = validate_record(record, template_sets=self.template_sets)
            if errors:
                raise ValueError(
                    'converter produced an invalid record:\n' + '\n'.join(str(e) for e in errors)
                )
        self._ids.add(record['id'])
        self.tasks[record['task']] += 1
        self._file.write(json.dumps(record, ensure_ascii=False, separators=(',', ':')) + '\n')


def print_summary(name: str, writer: RecordWriter, skipped: Counter) -> None:
    """What was written and what was skipped, one line each."""
    written = ', '.join(f'{n} {t}' for t, n in sorted(writer.tasks.items())) or 'nothing'
    print(f'{name}: wrote {written} records to {writer.path}')
    for reason, n in sorted(skipped.items()):
        print(f'{name}: skipped {n} x {reason}')


class CocoIndex:
    """Images, annotations per image and category names of a COCO-format json (dict)."""

    def __init__(self, coco: dict):
        self.images = {img['id']: img for img in coco.get('images', [])}
        self.anns = {ann['id']: ann for ann in coco.get('annotations', [])}
        self.anns_by_image: dict[Any, list[dict]] = defaultdict(list)
        for ann in coco.get('annotations', []):
            self.anns_by_image[ann['image_id']].append(ann)
        self.categories = {cat['id']: cat for cat in coco.get('categories', [])}

    def category_name(self, category_id: Any) -> str:
        """The name of a category id (the id as text when unknown)."""
        cat = self.categories.get(category_id)
        return cat['name'] if cat else str(category_id)


def coco_mask(segm: Any, width: int, height: int) -> Any | None:
    """A record mask from a COCO ``segmentation`` (polygons kept, RLE made compressed), or None
    when nothing usable remains (degenerate polygons, empty mask, wrong size)."""
    if isinstance(segm, list):
        mask = clean_polygons(segm)
        if not mask:
            return None
    elif isinstance(segm, dict) and 'counts' in segm:
        if isinstance(segm['counts'], list):
            from pycocotools import mask as mask_utils

            rle = mask_utils.frPyObjects(segm, *segm['size'])
            mask = {'size': [int(v) for v in rle['size']], 'counts': rle['counts'].decode('ascii')}
        else:
            counts = segm['counts']
            mask = {
                'size': list(segm['size']),
                'counts': counts.decode('ascii') if isinstance(counts, bytes) else counts,
            }
    else:
        return None
    return None if check_mask(mask, height, width) else mask


def coco_instance(
    ann: dict, img: dict, category: str, skipped: Counter, *, need_mask: bool = False
) -> dict | None:
    """A record instance (bbox xyxy clipped, mask, category, source_id) from a COCO annotation.

    Returns None and counts the reason in ``skipped`` when the box is degenerate or, with
    ``need_mask``, when the mask is unusable.
    """
    w, h = img['width'], img['height']
    bbox = round_bbox(xywh_to_xyxy(ann['bbox']), w, h) if ann.get('bbox') else None
    if bbox is None:
        skipped['annotation with an empty or out-of-image bbox'] += 1
        return None
    inst = {'bbox': bbox, 'category': category, 'source_id': ann.get('id')}
    mask = coco_mask(ann.get('segmentation'), w, h)
    if mask is not None:
        inst['mask'] = mask
    elif need_mask:
        skipped['annotation without a usable mask'] += 1
        return None
    return inst
