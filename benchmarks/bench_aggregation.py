# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""Mask-guided aggregation: batched block-one-hot matmul vs per-prompt loops (time and peak memory).

Run: ``python benchmarks/bench_aggregation.py`` (one intra-op thread; writes
``benchmarks/results/aggregation.json`` and prints a table).

Workload: CLIP-like features B = 4, C = 1024, 24 x 24; P = 1, 4, 16, 64 prompts spread over the
images; prompt masks at 336 x 336 (the CLIP input frame, as the pipeline rasterises them) with
random rectangles, so every method also pays the area resize.

Implementations, all in this process on the same inputs (all agree to 1e-4):
* ``ours``: :class:`MaskGuidedAggregation` (one area resize for all prompts, per-image padding,
  one batched matmul of block-restricted weights with the features).
* ``loop`` (the baseline): a straightforward per-prompt loop: resize and normalise the prompt's
  mask, then one masked sum per k x k block.
* ``gather_bmm``: the obvious batched alternative, ``feats[batch_idx]`` (a per-prompt copy of the
  features) then one bmm; shows why ours pads prompts per image instead.

Peak memory: bytes of CPU tensor memory allocated during one call beyond the inputs, from the
``torch.profiler`` memory timeline (see ``benchmarks/common.py:peak_cpu_memory``, self-checked on a
known allocation pattern at start-up).
"""

from __future__ import annotations

import argparse
import sys
from functools import partial
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import (  # noqa: E402
    check_peak_memory_method,
    format_table,
    peak_cpu_memory,
    ratio_summary,
    setup_single_thread,
    summarize,
    time_fn,
    write_results,
)
from mmrefvlm.models.prompt_encoders import MaskGuidedAggregation, block_one_hot, grid_position_code  # noqa: E402

K = 3


def make_inputs(
    num_prompts: int,
    seed: int,
    batch: int = 4,
    channels: int = 1024,
    grid: int = 24,
    mask_side: int = 336,
) -> tuple[torch.Tensor, ...]:
    gen = torch.Generator().manual_seed(seed)
    feats = torch.randn(batch, channels, grid, grid, generator=gen)
    masks = torch.zeros(num_prompts, mask_side, mask_side, dtype=torch.bool)
    corners = torch.randint(0, mask_side // 2, (num_prompts, 2), generator=gen)
    extents = torch.randint(8, mask_side // 2, (num_prompts, 2), generator=gen)
    for p in range(num_prompts):  # input construction only, not timed
        (y, x), (h, w) = corners[p].tolist(), extents[p].tolist()
        masks[p, y : y + h, x : x + w] = True
    batch_idx = torch.randint(0, batch, (num_prompts,), generator=gen)
    return feats, masks, batch_idx


def loop_aggregation(feats, masks, batch_idx, pos_code):
    """Baseline: per prompt, resize + normalise its mask, then one masked sum per block."""
    _, _, height, width = feats.shape
    rows = [(r * height + K - 1) // K for r in range(K + 1)]  # first h with floor(h*K/H) == r
    cols = [(c * width + K - 1) // K for c in range(K + 1)]
    out = []
    for p in range(masks.shape[0]):
        m = F.interpolate(masks[p][None, None].float(), size=(height, width), mode='area')[0, 0]
        m = m / m.sum().clamp(min=torch.finfo(torch.float32).tiny)
        f = feats[int(batch_idx[p])]
        tokens = [
            (
                f[:, rows[r] : rows[r + 1], cols[c] : cols[c + 1]]
                * m[rows[r] : rows[r + 1], cols[c] : cols[c + 1]]
            ).sum((1, 2))
            for r in range(K)
            for c in range(K)
        ]
        out.append(torch.stack(tokens) + pos_code)
    return torch.stack(out) if out else feats.new_zeros(0, K * K, feats.shape[1])


def gather_bmm_aggregation(feats, masks, batch_idx, pos_code):
    """Batched alternative: copy each prompt's feature map, then one bmm."""
    _, _, height, width = feats.shape
    m = F.interpolate(masks[:, None].float(), size=(height, width), mode='area').flatten(1)
    m = m / m.sum(-1, keepdim=True).clamp(min=torch.finfo(torch.float32).tiny)
    weights = m[:, None, :] * block_one_hot(height, width, K)  # (P, k*k, HW)
    per_prompt = feats.flatten(2)[batch_idx]  # (P, C, HW) copy
    return weights @ per_prompt.transpose(1, 2) + pos_code


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--repeats', type=int, default=15)
    parser.add_argument('--seed', type=int, default=0)
    args = parser.parse_args()
    setup_single_thread()
    check_peak_memory_method()
    module = MaskGuidedAggregation(k=K)
    results, rows = {}, []
    for num_prompts in (1, 4, 16, 64):
        feats, masks, batch_idx = make_inputs(num_prompts, args.seed)
        pos_code = grid_position_code(K, feats.shape[1])
        methods = dict(
            ours=partial(module, feats, masks, batch_idx),
            loop=partial(loop_aggregation, feats, masks, batch_idx, pos_code),
            gather_bmm=partial(gather_bmm_aggregation, feats, masks, batch_idx, pos_code),
        )
        with torch.no_grad():
            outs = {name: fn() for name, fn in methods.items()}
            agree = all(
                torch.allclose(o, outs['ours'], atol=1e-4, rtol=1e-4) for o in outs.values()
            )
            samples: dict[str, list[float]] = {name: [] for name in methods}
            for _ in range(args.repeats):  # interleaved rounds: load changes hit all alike
                for name, fn in methods.items():
                    samples[name] += time_fn(fn, repeats=1, warmup=1 if not samples[name] else 0)
            peak = {name: peak_cpu_memory(fn) for name, fn in methods.items()}
        speed = ratio_summary(samples['loop'], samples['ours'])
        results[f'P={num_prompts}'] = dict(
            times={n: summarize(s) for n, s in samples.items()},
            peak_bytes=peak,
            speedup_vs_loop=speed,
            speedup_vs_gather_bmm=ratio_summary(samples['gather_bmm'], samples['ours']),
            outputs_agree=agree,
        )
        t = results[f'P={num_prompts}']['times']
        rows.append(
            [
                num_prompts,
                f'{t["ours"]["median"] * 1e3:.2f}',
                f'{t["loop"]["median"] * 1e3:.2f}',
                f'{t["gather_bmm"]["median"] * 1e3:.2f}',
                f'{speed["median"]:.1f}x [{speed["low"]:.1f}, {speed["high"]:.1f}]',
                f'{peak["ours"] / 2**20:.2f}',
                f'{peak["loop"] / 2**20:.2f}',
                f'{peak["gather_bmm"] / 2**20:.2f}',
                'yes' if agree else 'NO',
            ]
        )
    path = write_results(
        'aggregation',
        dict(
            command='python benchmarks/bench_aggregation.py',
            repeats=args.repeats,
            k=K,
            workload=dict(
                batch=4,
                channels=1024,
                grid=[24, 24],
                mask_hw=[336, 336],
                prompts=[1, 4, 16, 64],
                seed=args.seed,
            ),
            memory_method='torch.profiler memory timeline: peak live CPU tensor bytes allocated '
            'during one call, inputs excluded',
            results=results,
        ),
    )
    print(
        format_table(
            [
                'P',
                'ours ms',
                'loop ms',
                'gather+bmm ms',
                'vs loop: median [q1/q3 bounds]',
                'ours MiB',
                'loop MiB',
                'gather+bmm MiB',
                'agree',
            ],
            rows,
        )
    )
    print(f'wrote {path}')


if __name__ == '__main__':
    main()
