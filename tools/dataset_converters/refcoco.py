# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""RefCOCO / RefCOCO+ / RefCOCOg (``refs(<by>).p`` + ``instances.json``) to ``rec`` / ``res``.

Example::

    python tools/dataset_converters/refcoco.py data/refcoco/refs\\(unc\\).p \\
        data/refcoco/instances.json --split val --image-dir data/coco/train2014 --data-root data \\
        --out data/records/refcoco_val.jsonl --tasks rec res

One record per sentence and task. The pickle is read with an unpickler that builds only plain
containers and scalars: any pickled class or function (which is how a pickle runs code) is refused.
"""

from __future__ import annotations

import argparse
import builtins
import os.path as osp
import pickle
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

#: The only globals a refs pickle may name (Python 2 pickles say ``__builtin__``).
_SAFE_GLOBALS = {
    'dict': 'dict',
    'list': 'list',
    'tuple': 'tuple',
    'set': 'set',
    'frozenset': 'frozenset',
    'str': 'str',
    'unicode': 'str',
    'int': 'int',
    'long': 'int',
    'float': 'float',
    'bool': 'bool',
}


class BuiltinsOnlyUnpickler(pickle.Unpickler):
    """Unpickler that resolves only builtin container/scalar types; everything else is refused."""

    def find_class(self, module: str, name: str):
        """Resolve a pickled global: plain builtin types only."""
        if module in ('builtins', '__builtin__') and name in _SAFE_GLOBALS:
            return getattr(builtins, _SAFE_GLOBALS[name])
        raise pickle.UnpicklingError(
            f'refusing to load {module}.{name} from the refs pickle: only plain data (dict, list, '
            'str, int, float) is allowed'
        )


def load_refs_pickle(path: str) -> list[dict]:
    """Load a ``refs(*).p`` file as a list of ref dicts, refusing any code object.

    Raises:
        pickle.UnpicklingError: The pickle names a class or function.
        ValueError: It does not hold a list of dicts.
    """
    with open(path, 'rb') as f:
        refs = BuiltinsOnlyUnpickler(f, encoding='utf-8').load()
    if not isinstance(refs, list) or not all(isinstance(r, dict) for r in refs):
        raise ValueError(f'{path}: expected a list of ref dicts, got {type(refs).__name__}')
    return refs


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse the command line."""
    parser = argparse.ArgumentParser(description='RefCOCO/+/g -> rec/res records')
    parser.add_argument('refs', help='refs(unc).p / refs(umd).p / refs(google).p')
    parser.add_argument('instances', help='the instances.json next to it')
    parser.add_argument(
        '--split',
        default=None,
        help='keep refs of this split (train, val, testA, testB, test); default: all',
    )
    parser.add_argument('--tasks', nargs='+', default=['rec', 'res'], choices=['rec', 'res'])
    parser.add_argument(
        '--dataset-name',
        default=None,
        help='source name for ids/meta (default: the refs folder name)',
    )
    add_common_args(parser)
    return parser.parse_args(argv)


def sentence_text(sent: dict) -> str:
    """The cleaned sentence (``sent``), falling back to ``raw``; whitespace collapsed."""
    text = sent.get('sent') or sent.get('raw') or ''
    return ' '.join(str(text).split())


def ref_records(
    args: argparse.Namespace, ref: dict, index: CocoIndex, name: str, skipped: Counter
) -> list[dict]:
    """``rec``/``res`` records of every sentence of one ref."""
    img, ann = index.images.get(ref.get('image_id')), index.anns.get(ref.get('ann_id'))
    if img is None or ann is None:
        skipped['ref whose image or annotation is missing from instances.json'] += 1
        return []
    inst = coco_instance(ann, img, index.category_name(ann['category_id']), skipped)
    if inst is None:
        return []
    split, out = ref.get('split', 'all'), []
    image = image_entry(args, img['file_name'], img['width'], img['height'])
    for sent in ref.get('sentences', []):
        text = sentence_text(sent)
        if not text:
            skipped['empty sentence'] += 1
            continue
        for task in args.tasks:
            unit = 'box' if task == 'rec' else 'mask'
            if unit == 'mask' and 'mask' not in inst:
                skipped['res: annotation without a usable mask'] += 1
                continue
            target = {k: v for k, v in inst.items() if k != 'mask' or unit == 'mask'}
            out.append(
                {
                    'id': f'{name}-{split}-{ref["ref_id"]}-s{sent.get("sent_id")}-{task}',
                    'task': task,
                    'image': image,
                    'instances': [target],
                    'depth': None,
                    'visual_prompts': [],
                    'conversation': [
                        template_turn(task, expr=text),
                        {'role': 'assistant', 'answer': [phrase_group(text, [unit], [0]), '.']},
                    ],
                    'meta': {
                        'source': name,
                        'split': split,
                        'ref_id': ref['ref_id'],
                        'sent_id': sent.get('sent_id'),
                        'ann_id': ref['ann_id'],
                        'image_id': ref['image_id'],
                    },
                }
            )
    return out


def main(argv: list[str] | None = None) -> Counter:
    """Run the conversion; returns the skip counts (reason -> number)."""
    args = parse_args(argv)
    refs = load_refs_pickle(args.refs)
    index = CocoIndex(load_json(args.instances))
    name = args.dataset_name or osp.basename(osp.dirname(osp.abspath(args.refs))) or 'refcoco'
    skipped: Counter = Counter()
    with RecordWriter(
        args.out, validate=not args.no_validate, template_dir=args.template_dir
    ) as writer:
        for ref in progress(refs, f'{name} refs'):
            if args.split is not None and ref.get('split') != args.split:
                continue
            for record in ref_records(args, ref, index, name, skipped):
                writer.write(record)
    print_summary('refcoco', writer, skipped)
    return skipped


if __name__ == '__main__':
    main()
