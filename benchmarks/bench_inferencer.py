# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""End-to-end ``RefVLMInferencer`` throughput at batch_size = 1, 2, 4, 8 (CPU, one thread).

Run: ``python benchmarks/bench_inferencer.py [--checkpoint work_dirs/demo/iter_4200.pth]``
(writes ``benchmarks/results/inferencer.json`` and prints the table).

Workload: the demo model (``configs/refvlm/demo_stage2.py``; the trained checkpoint when given,
else random weights with every answer scripted to the ground truth) answers the REC question of 8
demo validation images, given as file paths: what a user of ``tools/infer.py`` runs. Each timed
call is one ``inferencer(paths, questions, batch_size=B)`` over all 8 images: reading the files,
the config's test pipeline, left-padded greedy generation, decoders and the result dicts (masks as
RLE; no overlay). Variants run in interleaved rounds (one call each per round, the first untimed).
Answers at every B are compared with those at B = 1.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.common import (  # noqa: E402
    format_table,
    ratio_summary,
    setup_single_thread,
    summarize,
    write_results,
)

CONFIG = ROOT / 'configs' / 'refvlm' / 'demo_stage2.py'
BATCHES = (1, 2, 4, 8)


def load_inputs(data_root: Path, num: int) -> tuple[list[str], list[str], list[str]]:
    """``num`` REC samples of the demo val split: image paths, questions, ground-truth TRP."""
    from mmrefvlm.datasets import ensure_demo_dataset
    from mmrefvlm.datasets.template_bank import TemplateBank
    from mmrefvlm.trp import build_answer

    ensure_demo_dataset(str(data_root))
    bank = TemplateBank()
    paths, questions, answers = [], [], []
    with open(data_root / 'annotations' / 'val_rec.jsonl', encoding='utf-8') as f:
        for i, line in enumerate(f):
            if i == num:
                break
            rec = json.loads(line)
            paths.append(str(data_root / rec['image']['path']))
            questions.append(bank.render('rec', rec['conversation'][0]['slots'], index=i % 2))
            answers.append(build_answer(rec['conversation'][1]['answer']))
    return paths, questions, answers


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--checkpoint', help='trained demo checkpoint (default: random weights)')
    p.add_argument('--data-root', default=str(ROOT / 'data' / 'demo'))
    p.add_argument('--repeats', type=int, default=5)
    p.add_argument('--num-images', type=int, default=8)
    args = p.parse_args(argv)
    setup_single_thread()
    os.environ.setdefault('HF_HUB_OFFLINE', '1')
    import torch

    from mmrefvlm.apis import RefVLMInferencer

    torch.manual_seed(0)
    paths, questions, answers = load_inputs(Path(args.data_root), args.num_images)
    infer = RefVLMInferencer(str(CONFIG), args.checkpoint, device='cpu')
    if args.checkpoint is None:  # random weights write no TRP: script a realistic answer
        import pytest

        from mmrefvlm.testing.tool_helpers import script_generation

        script_generation(pytest.MonkeyPatch(), answers[0])
    run = {b: (lambda b=b: infer(paths, questions, batch_size=b)) for b in BATCHES}
    reference = {b: fn() for b, fn in run.items()}  # warm-up, and the answers to compare
    times: dict[int, list[float]] = {b: [] for b in BATCHES}
    for _ in range(args.repeats):
        for b, fn in run.items():
            t0 = time.perf_counter()
            fn()
            times[b].append(time.perf_counter() - t0)
    n = len(paths)
    rows, payload = [], {}
    for b in BATCHES:
        s = summarize(times[b])
        r = ratio_summary(times[1], times[b])
        same = sum(x['text'] == y['text'] for x, y in zip(reference[1], reference[b], strict=True))
        tokens = sum(len(infer.model.tokenizer.encode(x['text'])) for x in reference[b])
        rows.append(
            [
                f'B={b}',
                f'{n / s["median"]:.2f}',
                f'{1000 * s["median"] / n:.0f}',
                f'{r["median"]:.2f}x [{r["low"]:.2f}, {r["high"]:.2f}]',
                f'{same}/{n}',
                tokens,
            ]
        )
        payload[f'B={b}'] = dict(seconds=s, speedup=r, same_answer_as_b1=same, tokens=tokens)
    headers = [
        'batch',
        'images/s',
        'ms/image',
        'vs B=1 [q1/q3 bounds]',
        'same text as B=1',
        'tokens',
    ]
    print(format_table(headers, rows))  # noqa: T201
    path = write_results(
        'inferencer',
        dict(checkpoint=args.checkpoint, num_images=n, repeats=args.repeats, results=payload),
    )
    print(f'written to {path}')  # noqa: T201


if __name__ == '__main__':
    main()
