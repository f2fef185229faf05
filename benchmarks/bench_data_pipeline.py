# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""Data pipeline throughput: samples/s of one worker (one process) on the demo data, per task.

Run: ``python benchmarks/bench_data_pipeline.py`` (about 1 minute; writes
``benchmarks/results/data_pipeline.json`` and prints a table).

Workload: the training pipeline of ``configs/refvlm/demo_stage2.py`` (load image and depth, pad
and resize for both encoders, rasterise visual prompts, render TRP + tokenize, unit targets, pack)
on every one of the 15 demo tasks (``data/demo/annotations/train_<task>.jsonl``; generated if
missing). ``dataset[i]`` is timed per sample, i.e. record lookup + pipeline, in this process as
one DataLoader worker would run it (``num_workers=N`` runs N such loops in parallel).
The JSONL parsing at start-up (``full_init``) is not timed.

Baseline in the same script (``floor``): the irreducible part of a sample, reading and decoding its
image with PIL and resizing it to both encoder sizes; ``pipeline / floor`` says how much the
mmrefvlm transforms add on top of image I/O. Every transform is also timed on its own
(wall-clock wrappers around ``dataset.pipeline.transforms``), and the task whose pipeline is the
slowest is profiled with cProfile (top functions by cumulative time in the JSON).

Also measured, since the demo images are only 64 x 48 pixels: the image transforms of the pipeline
(``LoadRecordImage`` + ``PrepareImages``) on a COCO-sized JPEG (640 x 480) with the paper's encoder
sizes (336 and 512).

Goal: >= 100 samples/s per worker.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.common import format_table, setup_single_thread, summarize, write_results  # noqa: E402

GOAL = 100.0
CONFIG = ROOT / 'configs' / 'refvlm' / 'demo_stage2.py'


class TimedTransform:
    """Wraps a transform; accumulates its wall-clock time under its class name."""

    def __init__(self, transform, totals: dict[str, float]) -> None:
        self.transform = transform
        self.name = type(transform).__name__
        self.totals = totals

    def __call__(self, results):
        start = time.perf_counter()
        out = self.transform(results)
        self.totals[self.name] += time.perf_counter() - start
        return out


def build_datasets(data_root: Path, tasks: list[str] | None = None) -> dict:
    """One ``RefVLMDataset`` per demo task with the demo training pipeline (initialised)."""
    from mmengine.config import Config
    from mmengine.registry import init_default_scope

    from mmrefvlm.datasets import RefVLMDataset, ensure_demo_dataset

    ensure_demo_dataset(str(data_root))
    cfg = Config.fromfile(str(CONFIG))
    init_default_scope('mmrefvlm')
    found = sorted(
        p.name[len('train_') : -len('.jsonl')]
        for p in (data_root / 'annotations').glob('train_*.jsonl')
    )
    datasets = {}
    for task in tasks or found:
        ds = RefVLMDataset(
            ann_file=f'annotations/train_{task}.jsonl',
            data_root=str(data_root),
            pipeline=cfg.train_pipeline,
        )
        ds.full_init()
        datasets[task] = ds
    return datasets


def floor_fn(ds, sizes: list[int]):
    """The baseline: PIL read + decode + RGB + resize to every encoder size, per sample."""
    from PIL import Image

    def run(i: int) -> None:
        info = ds.get_data_info(i)
        path = os.path.join(str(ds.data_root), info['image']['path'])
        with Image.open(path) as im:
            im = im.convert('RGB')
            for s in sizes:
                torch.from_numpy(np.array(im.resize((s, s), Image.Resampling.BILINEAR)))

    return run


def paper_image_floor(
    repeats: int, size: tuple[int, int] = (640, 480), sides: tuple[int, ...] = (336, 512)
) -> dict:
    """The image part of the pipeline at paper scale: ``LoadRecordImage`` + ``PrepareImages``
    (square pad, resize for CLIP 336 and ConvNeXt 512) on a COCO-sized JPEG (synthetic: smooth
    colours + noise, quality 90), per image."""
    from PIL import Image

    from mmrefvlm.datasets.transforms import LoadRecordImage, PrepareImages

    gen = np.random.default_rng(0)
    yy, xx = np.mgrid[0 : size[1], 0 : size[0]]
    img = np.stack([xx * 255 // size[0], yy * 255 // size[1], (xx + yy) % 256], -1)
    img = np.clip(img + gen.normal(0, 20, img.shape), 0, 255).astype(np.uint8)
    load = LoadRecordImage()
    prepare = PrepareImages(sizes=dict(vit=sides[0], pyramid=sides[1]))
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, 'coco_like.jpg')
        Image.fromarray(img).save(path, quality=90)
        record = dict(id='coco-like', image=dict(path=path, width=size[0], height=size[1]))

        def run(_: int) -> None:
            prepare(load(dict(record)))

        times = [time_pass(run, range(20)) / 20 for _ in range(repeats + 1)][1:]
        parts = image_parts(path, sides, repeats)
    t = summarize(times)
    return dict(
        image_size=list(size),
        encoder_sizes=list(sides),
        s_per_image=t,
        images_per_s=1 / t['median'],
        parts_ms=parts,
    )


def image_parts(path: str, sides: tuple[int, ...], repeats: int) -> dict[str, float]:
    """Median ms of the image steps (decode, square pad, area resizes) and of two cheaper
    alternatives (``cv2.copyMakeBorder`` padding; resize first, then pad)."""
    import cv2
    from PIL import Image

    from mmrefvlm.datasets.transforms.images import CLIP_MEAN_RGB, pad_to_square, resize_square

    with Image.open(path) as im:
        arr = np.asarray(im.convert('RGB'))
    h, w = arr.shape[:2]
    square = pad_to_square(arr, CLIP_MEAN_RGB)

    def decode() -> None:
        with Image.open(path) as im:
            np.asarray(im.convert('RGB'))

    def border(a, bottom, right):
        return cv2.copyMakeBorder(a, 0, bottom, 0, right, cv2.BORDER_CONSTANT, value=CLIP_MEAN_RGB)

    def resize_then_pad() -> None:
        for side in sides:
            r = cv2.resize(
                arr,
                (round(side * w / max(h, w)), round(side * h / max(h, w))),
                interpolation=cv2.INTER_AREA,
            )
            border(r, side - r.shape[0], side - r.shape[1])

    steps = dict(
        decode=decode,
        pad_to_square=lambda: pad_to_square(arr, CLIP_MEAN_RGB),
        resize_square_all_sizes=lambda: [resize_square(square, s) for s in sides],
        alt_pad_copyMakeBorder=lambda: border(arr, max(h, w) - h, max(h, w) - w),
        alt_resize_then_pad_all_sizes=resize_then_pad,
    )
    return {
        k: summarize([time_pass(lambda _i, f=f: f(), range(10)) / 10 for _ in range(repeats)])[
            'median'
        ]
        * 1e3
        for k, f in steps.items()
    }


def time_pass(fn, indices) -> float:
    """Seconds for ``fn(i)`` over ``indices``."""
    start = time.perf_counter()
    for i in indices:
        fn(i)
    return time.perf_counter() - start


def profile_task(ds, indices, top: int = 15) -> list[dict]:
    """cProfile one pass of ``ds[i]``; the ``top`` functions by cumulative time."""
    prof = cProfile.Profile()
    prof.enable()
    for i in indices:
        ds[i]
    prof.disable()
    stats = pstats.Stats(prof, stream=io.StringIO()).sort_stats('cumulative')
    rows = []
    for (file, line, func), (_, ncalls, tottime, cumtime, _) in stats.stats.items():
        rows.append(
            dict(
                function=f'{Path(file).name}:{line}({func})',
                calls=ncalls,
                tottime_ms=tottime * 1e3 / len(indices),
                cumtime_ms=cumtime * 1e3 / len(indices),
            )
        )
    rows.sort(key=lambda r: -r['cumtime_ms'])
    return rows[:top]


def measure(
    datasets: dict, sizes: list[int], transform_totals: dict, samples: int, repeats: int
) -> tuple[dict, list]:
    """Interleaved rounds (round 0 untimed) of pipeline and floor passes over every task."""
    pipe = {t: [] for t in datasets}
    floor = {t: [] for t in datasets}
    timed_samples = {t: 0 for t in datasets}
    for rnd in range(repeats + 1):  # round 0 warms caches and is not recorded
        for task, ds in datasets.items():
            n = min(samples, len(ds))
            idx = range(n)
            if rnd == 0:
                time_pass(ds.__getitem__, idx)
                time_pass(floor_fn(ds, sizes), idx)
                for k in transform_totals[task]:
                    transform_totals[task][k] = 0.0
                continue
            pipe[task].append(time_pass(ds.__getitem__, idx) / n)
            floor[task].append(time_pass(floor_fn(ds, sizes), idx) / n)
            timed_samples[task] += n
    results, rows = {}, []
    for task in datasets:
        p, f = summarize(pipe[task]), summarize(floor[task])
        per_transform = {k: v / timed_samples[task] for k, v in transform_totals[task].items()}
        results[task] = dict(
            pipeline_s_per_sample=p,
            floor_s_per_sample=f,
            samples_per_s=1 / p['median'],
            floor_samples_per_s=1 / f['median'],
            samples_per_s_range=[1 / p['max'], 1 / p['min']],
            per_transform_s=per_transform,
        )
        top = sorted(per_transform.items(), key=lambda kv: -kv[1])[:2]
        rows.append(
            [
                task,
                f'{1 / p["median"]:.0f}',
                f'{1 / p["max"]:.0f}-{1 / p["min"]:.0f}',
                f'{p["median"] * 1e3:.2f}',
                f'{f["median"] * 1e3:.2f}',
                f'{p["median"] / f["median"]:.1f}x',
                ', '.join(f'{k} {v * 1e3:.2f}' for k, v in top),
            ]
        )
    return results, rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--samples', type=int, default=150, help='samples per task per round')
    parser.add_argument('--repeats', type=int, default=5, help='interleaved rounds')
    parser.add_argument('--data-root', default=str(ROOT / 'data' / 'demo'))
    args = parser.parse_args()
    setup_single_thread()
    datasets = build_datasets(Path(args.data_root))
    from mmengine.config import Config

    cfg = Config.fromfile(str(CONFIG))
    sizes = sorted({cfg.vit_image_size, cfg.pyramid_image_size})
    transform_totals = {t: defaultdict(float) for t in datasets}
    for task, ds in datasets.items():
        ds.pipeline.transforms = [
            TimedTransform(t, transform_totals[task]) for t in ds.pipeline.transforms
        ]
    results, rows = measure(datasets, sizes, transform_totals, args.samples, args.repeats)
    all_pipe = sum(r['pipeline_s_per_sample']['median'] for r in results.values()) / len(results)
    all_floor = sum(r['floor_s_per_sample']['median'] for r in results.values()) / len(results)
    worst = min(results, key=lambda t: results[t]['samples_per_s'])
    profile = profile_task(datasets[worst], range(min(args.samples, len(datasets[worst]))))
    paper_floor = paper_image_floor(args.repeats)
    overall = dict(
        samples_per_s_equal_task_mix=1 / all_pipe,
        floor_samples_per_s_equal_task_mix=1 / all_floor,
        slowest_task=worst,
        slowest_samples_per_s=results[worst]['samples_per_s'],
        goal=GOAL,
        goal_met=results[worst]['samples_per_s'] >= GOAL,
    )
    path = write_results(
        'data_pipeline',
        dict(
            command='python benchmarks/bench_data_pipeline.py',
            config=str(CONFIG.relative_to(ROOT)),
            samples_per_task_per_round=args.samples,
            repeats=args.repeats,
            encoder_sizes=sizes,
            tasks=results,
            overall=overall,
            profile_of_slowest_task=profile,
            paper_scale_image_floor=paper_floor,
        ),
    )
    print(
        format_table(
            [
                'task',
                'samples/s (median)',
                'range',
                'ms/sample',
                'floor ms',
                'pipeline/floor',
                'top transforms (ms)',
            ],
            rows,
        )
    )
    print(
        f'equal-mix: {overall["samples_per_s_equal_task_mix"]:.0f} samples/s per worker '
        f'(floor {overall["floor_samples_per_s_equal_task_mix"]:.0f}); slowest task {worst}: '
        f'{overall["slowest_samples_per_s"]:.0f}/s; goal >= {GOAL:.0f}/s: '
        f'{"met" if overall["goal_met"] else "MISSED"}'
    )
    print(
        f'paper scale: LoadRecordImage + PrepareImages on a 640 x 480 JPEG (to 336 and 512 '
        f'px): {paper_floor["images_per_s"]:.0f} images/s; parts (ms): '
        + ', '.join(f'{k} {v:.2f}' for k, v in paper_floor['parts_ms'].items())
    )
    print(
        f'cProfile of {worst} (ms/sample, cumulative): '
        + '; '.join(f'{r["function"]} {r["cumtime_ms"]:.2f}' for r in profile[:8])
    )
    print(f'wrote {path}')


if __name__ == '__main__':
    main()
