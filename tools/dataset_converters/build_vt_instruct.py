# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""Build ``data/vt_instruct`` from the public datasets: every converter, the configs' file names.

Example (the files ``configs/refvlm/stage2.py`` reads; downloads laid out as docs/prepare.md
says under ``data/``)::

    python tools/dataset_converters/build_vt_instruct.py --src data --out data/vt_instruct
    python tools/dataset_converters/build_vt_instruct.py --config configs/refvlm/stage1.py

Steps:

1. The image folders of the sources are linked under ``<out>/images/`` (records store paths
   relative to ``<out>``, the configs' ``data_root``).
2. Each annotation file the config names is produced by its converter (the recipe below); a
   source whose files are missing is skipped and reported with the doc section to follow.
3. Every output is validated (``validate_records``, including that each image exists, unless
   ``--skip-file-check``).
4. Records per task are printed next to the task shares of the paper's Table 17.

Exits 1 when a file the config needs could not be built or is invalid.
"""

import argparse
import importlib.util
import json
import os
import os.path as osp
import sys
from collections import Counter
from dataclasses import dataclass

HERE = osp.dirname(osp.abspath(__file__))
sys.path.insert(0, osp.dirname(osp.dirname(HERE)))

from mmrefvlm.datasets.records import load_template_sets, validate_file  # noqa: E402

DOC = 'docs/prepare.md#2-data-vt-instruct'
#: Link under ``<out>/images/`` -> folder under ``--src`` (the layout of docs/prepare.md).
IMAGE_DIRS = {
    'coco/train2014': 'coco/train2014',
    'coco/train2017': 'coco/train2017',
    'coco/val2017': 'coco/val2017',
    'flickr30k': 'flickr30k/flickr30k-images',
    'grandf': 'GranDf/GranDf_HA_images/train',
    'llava': 'llava',
    'nyu': 'nyu',
}
#: Table 17 of the paper: share of each task category in the training data, per stage (%).
TABLE17 = {
    'visual understanding': {'stage1': 55.85, 'stage2': 26.22},
    'referring expression': {'stage1': 25.58, 'stage2': 40.57},
    'GCG': {'stage1': 20.29, 'stage2': 14.01},
    'interactive grounding': {'stage2': 2.90},
    'open-vocabulary identification': {'stage2': 16.30},
    'keypoint detection': {'stage3_keypoint': 100.0},
}
CATEGORY = {
    'caption': 'visual understanding',
    'vqa': 'visual understanding',
    'rec': 'referring expression',
    'res': 'referring expression',
    'reg': 'referring expression',
    'gres': 'referring expression',
    'gcg_box': 'GCG',
    'gcg_mask': 'GCG',
    'ig_box': 'interactive grounding',
    'ig_mask': 'interactive grounding',
    'ig_keypoint': 'interactive grounding',
    'ovd': 'open-vocabulary identification',
    'ovs': 'open-vocabulary identification',
    'keypoint': 'keypoint detection',
}


# (no `from __future__ import annotations` in this file: tests load it with importlib without
# registering it in sys.modules, and dataclasses then cannot resolve string annotations)
@dataclass(frozen=True)
class Step:
    """One output file of the recipe.

    Args:
        out (str): The file under ``--out``, as the configs name it.
        converter (str): ``tools/dataset_converters/<converter>.py``.
        inputs (tuple[str, ...]): Positional inputs, relative to ``--src``.
        images (str): Key of :data:`IMAGE_DIRS` (the images the records point to).
        args (tuple[str, ...]): Further converter arguments; ``{src}`` and ``{images}`` are
            replaced by the source root and the linked image folder.
    """

    out: str
    converter: str
    inputs: tuple[str, ...]
    images: str
    args: tuple[str, ...] = ()


def _refcoco_steps() -> list[Step]:
    steps = []
    sources = (('refcoco', 'refs(unc).p'), ('refcoco+', 'refs(unc).p'), ('refcocog', 'refs(umd).p'))
    for name, refs in sources:
        for split in ('train', 'val'):
            for task in ('rec', 'res'):
                steps.append(
                    Step(
                        f'refcoco/{name}_{split}_{task}.jsonl',
                        'refcoco',
                        (f'{name}/{refs}', f'{name}/instances.json'),
                        'coco/train2014',
                        ('--split', split, '--tasks', task, '--dataset-name', name),
                    )
                )
    return steps


def _coco_steps() -> list[Step]:
    steps = [
        Step(
            f'coco/coco_caption_{split}.jsonl',
            'coco_captions',
            (f'coco/annotations/captions_{split}2017.json',),
            f'coco/{split}2017',
        )
        for split in ('train', 'val')
    ]
    steps += [
        Step(
            f'coco/coco_train_{task}.jsonl',
            'coco_instances',
            ('coco/annotations/instances_train2017.json',),
            'coco/train2017',
            ('--tasks', task),
        )
        for task in ('ovd', 'ovs')
    ]
    steps += [
        Step(
            f'coco/coco_{split}_keypoint.jsonl',
            'coco_keypoints',
            (f'coco/annotations/person_keypoints_{split}2017.json',),
            f'coco/{split}2017',
        )
        for split in ('train', 'val')
    ]
    steps += [
        Step(
            f'coco_interactive/cocoint_train_{task}.jsonl',
            'coco_interactive',
            ('coco_interactive/coco_interactive_train_psalm.json',),
            'coco/train2017',
            ('--tasks', task),
        )
        for task in ('ig_box', 'ig_mask', 'reg')
    ]
    return steps


RECIPE: tuple[Step, ...] = (
    *_refcoco_steps(),
    Step(
        'grefcoco/grefcoco_train.jsonl',
        'grefcoco',
        ('grefcoco/grefs(unc).json', 'grefcoco/instances.json'),
        'coco/train2014',
        ('--split', 'train'),
    ),
    *_coco_steps(),
    Step(
        'llava/llava_v1_5_mix665k_vqa.jsonl',
        'llava_instruct',
        ('llava/llava_v1_5_mix665k.json',),
        'llava',
    ),
    Step(
        'flickr30k/flickr30k_train_gcg_box.jsonl',
        'flickr30k_entities',
        ('flickr30k_entities',),
        'flickr30k',
        ('--split-file', '{src}/flickr30k_entities/train.txt'),
    ),
    Step(
        'grandf/grandf_train_gcg_mask.jsonl',
        'grandf_gcg',
        ('GranDf/annotations/train/GranDf_HA_GCG_train.json',),
        'grandf',
    ),
    Step(
        'nyu/nyu_train_depth.jsonl',
        'nyu_depth',
        ('nyu/nyudepthv2_train_files_with_gt.txt',),
        'nyu',
        ('--rgb-root', '{images}/sync', '--split', 'train'),
    ),
    Step(
        'nyu/nyu_test_depth.jsonl',
        'nyu_depth',
        ('nyu/nyudepthv2_test_files_with_gt.txt',),
        'nyu',
        ('--rgb-root', '{images}/official_splits/test', '--split', 'test'),
    ),
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse the command line."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--src', default='data', help='root of the downloaded public datasets')
    p.add_argument('--out', default=None, help="output root (default: the config's data_root)")
    p.add_argument(
        '--config',
        default=osp.join(osp.dirname(osp.dirname(HERE)), 'configs', 'refvlm', 'stage2.py'),
        help='build the annotation files this config names (default configs/refvlm/stage2.py)',
    )
    p.add_argument('--all', action='store_true', help='build every file of the recipe')
    p.add_argument('--skip-file-check', action='store_true', help='do not check image files')
    return p.parse_args(argv)


def config_files(path: str) -> tuple[list[str], set[str]]:
    """The ``ann_file``s (in order, unique) and ``data_root``s of a config's dataloaders."""
    from mmengine.config import Config

    cfg = Config.fromfile(path)
    files: list[str] = []
    roots: set[str] = set()

    def walk(node) -> None:
        if isinstance(node, dict):
            if isinstance(node.get('ann_file'), str):
                files.append(node['ann_file']) if node['ann_file'] not in files else None
                roots.add(str(node.get('data_root') or ''))
            for v in node.values():
                walk(v)
        elif isinstance(node, (list, tuple)):
            for v in node:
                walk(v)

    for key in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        walk(cfg.get(key))
    return files, roots


def run_step(step: Step, src: str, out: str) -> str | None:
    """Run one converter; returns why it was skipped (None when it ran)."""
    missing = [i for i in step.inputs if not osp.exists(osp.join(src, i))]
    if missing:
        return f'missing {", ".join(osp.join(src, m) for m in missing)}'
    images = osp.join(out, 'images', step.images)
    target = osp.abspath(osp.join(src, IMAGE_DIRS[step.images]))
    if not osp.lexists(images) and osp.isdir(target):
        os.makedirs(osp.dirname(images), exist_ok=True)
        os.symlink(target, images, target_is_directory=True)
    fmt = dict(src=src, images=images)
    argv = [osp.join(src, i) for i in step.inputs] + [a.format(**fmt) for a in step.args]
    argv += ['--data-root', out, '--out', osp.join(out, step.out)]
    if step.converter != 'nyu_depth':
        argv += ['--image-dir', images]
    spec = importlib.util.spec_from_file_location(
        f'_vt_converter_{step.converter}', osp.join(HERE, f'{step.converter}.py')
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.main(argv)
    return None


def task_counts(paths: list[str]) -> Counter:
    """Records per task over JSONL files."""
    counts: Counter = Counter()
    for path in paths:
        with open(path, encoding='utf-8') as f:
            for line in f:
                if line.strip():
                    counts[json.loads(line)['task']] += 1
    return counts


def print_counts(counts: Counter) -> None:
    """Records per task and per Table-17 category, next to the paper's shares."""
    total = sum(counts.values()) or 1
    print(f'\n{"task":<14}{"records":>10}{"share":>9}  category')
    for task, n in sorted(counts.items(), key=lambda kv: (CATEGORY.get(kv[0], '~'), kv[0])):
        print(f'{task:<14}{n:>10}{100 * n / total:>8.2f}%  {CATEGORY.get(task, "-")}')
    print(f'\n{"category (Table 17)":<32}{"built":>8}{"paper stage 1":>15}{"paper stage 2":>15}')
    for cat, paper in TABLE17.items():
        built = sum(n for t, n in counts.items() if CATEGORY.get(t) == cat)
        cols = [f'{paper[s]:.2f}%' if s in paper else '-' for s in ('stage1', 'stage2')]
        print(f'{cat:<32}{100 * built / total:>7.2f}%{cols[0]:>15}{cols[1]:>15}')
    print(f'{"total records":<32}{sum(counts.values()):>8}')


def main(argv: list[str] | None = None) -> int:
    """Build, validate and count; returns the exit status."""
    args = parse_args(argv)
    wanted, roots = config_files(args.config)
    by_out = {s.out: s for s in RECIPE}
    if args.all:
        wanted = list(by_out)
    if args.out is None and len(roots) > 1:
        print(
            f'build_vt_instruct: the configs name several data roots {sorted(roots)}; '
            'say which one to build with --out',
            file=sys.stderr,
        )
        return 2
    out = args.out or (roots.pop() if roots else 'data/vt_instruct')
    problems: list[str] = []
    built: list[str] = []
    for name in wanted:
        step = by_out.get(name)
        if step is None:
            problems.append(f'{name}: no converter recipe for this file')
            continue
        why = run_step(step, args.src, out)
        if why:
            problems.append(f'{name}: skipped, {why} (see {DOC})')
        else:
            built.append(osp.join(out, name))
    sets = load_template_sets()
    for path in built:
        report = validate_file(  # the image folders are links out of `out` (step 1)
            path,
            data_root=None if args.skip_file_check else out,
            template_sets=sets,
            allow_outside_data_root=True,
        )
        print(f'{path}: {report.num_records} records, {report.num_errors} errors')
        for error in report.errors[:5]:
            print(f'  line {error.line} id={error.record_id} {error.field}: {error.message}')
        if report.num_errors:
            problems.append(f'{path}: {report.num_errors} validation errors (listed above)')
    print_counts(task_counts(built))
    for p in problems:
        print(f'problem: {p}')
    return 1 if problems else 0


if __name__ == '__main__':
    sys.exit(main())
