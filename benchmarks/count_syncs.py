# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""Device->host synchronisations and host->device copies of ``RefVLM.loss`` per training step.

Run: ``python benchmarks/count_syncs.py [--config CONFIG] [--steps 8] [--device cpu|cuda]``
(writes ``benchmarks/results/sync_counts[_cuda].json``).

Method: the config's model and training dataloader (``configs/refvlm/demo_stage2.py`` by default)
are built without a runner; for each of ``--steps`` batches the data preprocessor runs outside
the counted region, then ``model(**data, mode='loss')`` runs inside a
:class:`mmrefvlm.testing.SyncCounter` (on CPU it counts what would synchronise on an
accelerator; on CUDA the real devices decide). With ``--device cuda`` the same steps also run
under ``torch.cuda.set_sync_debug_mode('warn')`` and the warnings are counted.

``--time-rounds N`` also times loss + backward on the same batches for the current loss and for
the previous loss path frozen in ``tests/test_models/reference_loss.py``, interleaved (round by
round, batch by batch) in the same process, so that a load change affects both alike.
"""

from __future__ import annotations

import argparse
import collections
import statistics
import sys
import warnings
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.common import setup_single_thread, write_results  # noqa: E402

CONFIG = ROOT / 'configs' / 'refvlm' / 'demo_stage2.py'


def build(config: str, device: str):
    """The config's model (train mode, on ``device``) and training dataloader."""
    import os

    from mmengine.registry import init_default_scope
    from mmengine.runner import Runner

    from mmrefvlm.apis import load_config
    from mmrefvlm.datasets import ensure_demo_dataset
    from mmrefvlm.registry import MODELS

    os.chdir(ROOT)  # data roots in the configs are relative to the repository
    ensure_demo_dataset(str(ROOT / 'data' / 'demo'))
    cfg = load_config(config)
    init_default_scope(cfg.get('default_scope', 'mmrefvlm'))
    cfg.train_dataloader.num_workers = 0
    cfg.train_dataloader.pop('persistent_workers', None)
    torch.manual_seed(0)
    model = MODELS.build(cfg.model).to(device).train()
    return model, Runner.build_dataloader(cfg.train_dataloader, seed=0)  # the same batches each run


def count_step(model, data, device: str) -> dict:
    """Counter events of one loss call, and the CUDA debug-mode warnings on CUDA."""
    from mmrefvlm.testing import SyncCounter

    with SyncCounter(simulate=device == 'cpu') as counter:
        losses = model(**data, mode='loss')
    out = dict(
        d2h=counter.num_syncs,
        h2d_pageable=counter.num_h2d_pageable,
        h2d_async=len(counter.of_kind('h2d_async')),
        events=[(e.kind, e.op, e.where) for e in counter.events],
    )
    sum(losses.values()).backward()
    if device == 'cuda':
        torch.cuda.synchronize()
        torch.cuda.set_sync_debug_mode('warn')
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter('always')
                model(**data, mode='loss')
        finally:
            torch.cuda.set_sync_debug_mode('default')
        out['cuda_sync_warnings'] = sum('synchroniz' in str(w.message) for w in caught)
    model.zero_grad(set_to_none=True)
    return out


def time_paths(model, batches: list, rounds: int, device: str) -> dict:
    """Median ms of loss + backward per batch: the current ``RefVLM.loss`` vs the previous path."""
    import time

    from tests.test_models.reference_loss import reference_loss

    sync = torch.cuda.synchronize if device == 'cuda' else (lambda: None)
    paths = dict(
        current=lambda d: model(**d, mode='loss'),
        previous=lambda d: reference_loss(model, d['inputs'], d['data_samples']),
    )
    times: dict[str, list[float]] = {k: [] for k in paths}
    for r in range(rounds + 1):  # round 0 warms up
        for i, d in enumerate(batches):
            order = list(paths.items())
            for name, fn in order if (r + i) % 2 else order[::-1]:  # alternate who goes first
                sync()
                start = time.perf_counter()
                sum(fn(d).values()).backward()
                sync()
                if r:
                    times[name].append(time.perf_counter() - start)
                model.zero_grad(set_to_none=True)
    med = {k: 1e3 * statistics.median(v) for k, v in times.items()}
    return dict(
        ms_median=med, speedup=med['previous'] / med['current'], samples=len(times['current'])
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--config', default=str(CONFIG))
    parser.add_argument('--steps', type=int, default=8)
    parser.add_argument('--device', default='cpu', choices=('cpu', 'cuda'))
    parser.add_argument('--time-rounds', type=int, default=0, help='see the module docstring')
    args = parser.parse_args()
    setup_single_thread()
    model, loader = build(args.config, args.device)
    steps, batches = [], []
    for i, batch in enumerate(loader):
        if i == args.steps:
            break
        data = model.data_preprocessor(batch, training=True)
        steps.append(count_step(model, data, args.device))
        batches.append(data)
    timing = time_paths(model, batches, args.time_rounds, args.device) if args.time_rounds else None
    where = collections.Counter(
        f'{kind} {op} @ {loc.split("/mmrefvlm/")[-1]}'
        for s in steps
        for kind, op, loc in s['events']
    )
    keys = ('d2h', 'h2d_pageable', 'h2d_async', 'cuda_sync_warnings')
    summary = {
        k: dict(per_step=[s[k] for s in steps], median=statistics.median(s[k] for s in steps))
        for k in keys
        if k in steps[0]
    }
    for k, v in summary.items():
        print(f'{k:20s} per step {v["per_step"]} (median {v["median"]})')
    if timing:
        ms = timing['ms_median']
        print(
            f'loss + backward per batch (median of {timing["samples"]}): current '
            f'{ms["current"]:.1f} ms, previous path {ms["previous"]:.1f} ms '
            f'({timing["speedup"]:.2f}x)'
        )
    print(f'events over {len(steps)} steps, by place:')
    for line, n in where.most_common(40):
        print(f'{n:5d}  {line}')
    path = write_results(
        'sync_counts' if args.device == 'cpu' else 'sync_counts_cuda',
        dict(
            command='python benchmarks/count_syncs.py ' + ' '.join(sys.argv[1:]),
            config=str(Path(args.config).resolve().relative_to(ROOT)),
            device=args.device,
            steps=len(steps),
            **summary,
            by_place=dict(where.most_common()),
            loss_backward_timing=timing,
        ),
    )
    print(f'wrote {path}')


if __name__ == '__main__':
    main()
