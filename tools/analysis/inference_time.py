# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""Seconds per sample of a trained model's ``test_step`` (preprocessing + prediction, no metric)
on the first samples of its test split, with the per-stage ``timing`` a model may write on its
samples (e.g. SAM4MLLM's ``generate`` / ``point_query`` / ``sam``) averaged too.

    python tools/analysis/inference_time.py CONFIG CHECKPOINT --num-samples 64 [--datasets 0 1] \
        [--cfg-options test_dataloader.dataset.datasets.0.indices=40 ...]

Prints one JSON line: ``{"config", "samples", "batch_size", "seconds_per_sample", "process_cpu_
seconds_per_sample", "stages": {...}}``. Batches are timed after one warm-up batch. The wall time
follows the machine's load; the process CPU time is the fairer comparison on a shared machine.
"""

from __future__ import annotations

import argparse
import json
import os.path as osp
import sys
import time

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))


def parse_args(argv=None):
    from mmengine.config import DictAction

    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('config')
    p.add_argument('checkpoint')
    p.add_argument('--num-samples', type=int, default=80)
    p.add_argument(
        '--datasets', type=int, nargs='+', help='keep these datasets of a ConcatDataset test split'
    )
    p.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        default={},
        help='key=value overrides, applied after --datasets',
    )
    return p.parse_args(argv)


def main(argv=None) -> dict:
    """Time the model and print / return the result."""
    import torch
    from mmengine.runner import load_checkpoint

    from mmrefvlm.apis import build_runner, load_config

    args = parse_args(argv)
    cfg = load_config(args.config)
    if args.datasets is not None:
        kept = [cfg.test_dataloader.dataset.datasets[i] for i in args.datasets]
        cfg.test_dataloader.dataset.datasets = kept
    cfg.merge_from_dict(args.cfg_options)
    cfg.work_dir = cfg.get('work_dir') or osp.join('work_dirs', 'inference_time')
    runner = build_runner(cfg)
    model = runner.model.eval()
    # weights-only (the loader mmrefvlm registers); strict: a checkpoint of another config is an
    # error, not a timing of partly random weights
    load_checkpoint(model, args.checkpoint, map_location='cpu', strict=True)
    loader = runner.build_dataloader(cfg.test_dataloader)
    done, wall, cpu, stages = 0, 0.0, 0.0, {}
    with torch.no_grad():
        for i, batch in enumerate(loader):
            t0, c0 = time.perf_counter(), time.process_time()
            samples = model.test_step(batch)
            dt, dc = time.perf_counter() - t0, time.process_time() - c0
            if i == 0:
                continue  # warm-up
            wall, cpu, done = wall + dt, cpu + dc, done + len(samples)
            for sample in samples:
                for key, value in (sample.get('timing') or {}).items():
                    stages[key] = stages.get(key, 0.0) + float(value)
            if done >= args.num_samples:
                break
    if done == 0:
        raise SystemExit(
            'inference_time: the test split has no batch after the warm-up batch; give it more '
            'samples (indices) or a smaller test_dataloader.batch_size'
        )
    result = dict(
        config=args.config,
        samples=done,
        batch_size=cfg.test_dataloader.batch_size,
        seconds_per_sample=wall / done,
        process_cpu_seconds_per_sample=cpu / done,
        stages={k: v / done for k, v in stages.items()},
    )
    print(json.dumps(result))
    return result


if __name__ == '__main__':
    main()
