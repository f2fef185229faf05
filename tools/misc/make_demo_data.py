# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""Generate the embedded demo dataset (no download; deterministic for a seed).

Example:
    python tools/misc/make_demo_data.py --out data/demo --seed 0 --num-train 1500 --num-val 200
"""

import argparse
import os.path as osp
import sys
import time

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))

from mmrefvlm.datasets.demo import DEMO_TASKS, generate_demo_dataset  # noqa: E402


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--out', default='data/demo', help='output folder (default data/demo)')
    parser.add_argument('--seed', type=int, default=0, help='dataset seed (default 0)')
    parser.add_argument('--num-train', type=int, default=1500, help='train images (default 1500)')
    parser.add_argument('--num-val', type=int, default=200, help='val images (default 200)')
    parser.add_argument(
        '--tasks',
        nargs='+',
        default=list(DEMO_TASKS),
        choices=DEMO_TASKS,
        metavar='TASK',
        help=f'tasks to write (default all: {" ".join(DEMO_TASKS)})',
    )
    parser.add_argument(
        '--workers', type=int, default=1, help='processes drawing images (same files; default 1)'
    )
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    start = time.perf_counter()
    meta = generate_demo_dataset(
        args.out,
        seed=args.seed,
        num_train_images=args.num_train,
        num_val_images=args.num_val,
        tasks=args.tasks,
        workers=args.workers,
    )
    splits = ', '.join(
        f'{k}: {v["num_images"]} images / {v["num_instances"]} objects'
        for k, v in meta['splits'].items()
    )
    print(
        f'wrote {args.out} ({splits}; {len(meta["tasks"])} tasks) in '
        f'{time.perf_counter() - start:.1f}s'
    )


if __name__ == '__main__':
    main()
