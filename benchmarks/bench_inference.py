# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""Inference throughput at B = 1, 2, 4, 8 and the share of time after generation.

Run: ``python benchmarks/bench_inference.py`` (about 1 minute; writes
``benchmarks/results/inference.json`` and prints the tables). With ``--config CONFIG
[--device cuda] [--random-init]`` it measures the paper-scale model instead (generated tokens/s at
B = 1, 8, 32): see :mod:`benchmarks.paper_inference`.

Model and data: the tiny demo model of ``configs/refvlm/demo_stage2.py`` (random weights, seed 0)
in eval mode; 8 samples of the demo validation set, one from each of 8 tasks (REC, RES, GRES,
IG-box, IG-mask, keypoint, depth, VQA), through the test pipeline. Each timed call is what the
test loop runs per batch: ``data_preprocessor`` (left padding) + ``model.predict`` (greedy
generation with KV cache -> TRP parse -> route -> visual decoders).

A fair comparison across batch sizes (``scripted decoding``): random weights would emit arbitrary
tokens, stop at arbitrary points and rarely produce a ``<REF>``, so every sample is made to
generate exactly ``T = max_new_tokens`` tokens: its ground-truth answer (``gt_text``, truncated to
T) followed by a filler token, never EOS. The LM head still runs on every step; a hook replaces
its logits by a one-hot of the scripted token. So each batch size does the same work per sample
(T decode steps, same prompts, the same triplets to parse, route and decode), and the
post-generation stage sees realistic answers. Throughput = 8 samples / time for all 8 (8/B
batches), in interleaved rounds (one pass per B per round).

Goals: throughput per sample at B = 8 >= 0.7 x 8 x the B = 1 throughput; the time after
generation (token parse, routing, visual decoders, assembling the predictions) <= 10 % of the
inference time.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.common import (  # noqa: E402
    format_table,
    ratio_summary,
    setup_single_thread,
    summarize,
    write_results,
)
from benchmarks.step_timers import Sections  # noqa: E402

CONFIG = ROOT / 'configs' / 'refvlm' / 'demo_stage2.py'
TASKS = ('rec', 'res', 'gres', 'ig_box', 'ig_mask', 'keypoint', 'depth', 'vqa')
BATCHES = (1, 2, 4, 8)
POST = ('parse (find_refs)', 'route', 'visual decoders', 'merge + detokenize')
SPEEDUP_GOAL = 0.7
POST_GOAL = 0.10


def build(seed: int):
    """The demo model (random weights) and one packed val sample per task."""
    from mmengine.config import Config
    from mmengine.registry import init_default_scope

    from mmrefvlm.datasets import RefVLMDataset, ensure_demo_dataset
    from mmrefvlm.registry import MODELS

    ensure_demo_dataset(str(ROOT / 'data' / 'demo'))
    cfg = Config.fromfile(str(CONFIG))
    init_default_scope('mmrefvlm')
    torch.manual_seed(seed)
    model = MODELS.build(cfg.model).eval()
    samples = []
    for task in TASKS:
        ds = RefVLMDataset(
            ann_file=f'annotations/val_{task}.jsonl',
            data_root='data/demo',
            pipeline=cfg.test_pipeline,
            test_mode=True,
        )
        samples.append(ds[0])
    return model, samples


class Script:
    """Scripted decoding: per sample the token to emit at each step (see the module docstring)."""

    def __init__(self, model, samples, steps: int) -> None:
        tok = model.tokenizer
        filler = tok.encode(' .')[-1]
        rows = []
        for s in samples:
            ids = tok.encode(s['data_samples'].gt_text)[:steps]
            rows.append(ids + [filler] * (steps - len(ids)))
        self.tokens = torch.tensor(rows, dtype=torch.long)  # (N, T)
        self.answer_lengths = [
            min(len(tok.encode(s['data_samples'].gt_text)), steps) for s in samples
        ]
        self.batch_rows: torch.Tensor | None = None
        self.step = 0

    def logits(self, out: torch.Tensor) -> torch.Tensor:
        """(B, V) logits -> one-hot of this step's scripted tokens."""
        want = self.tokens[self.batch_rows, self.step]
        self.step += 1
        return torch.zeros_like(out).scatter_(-1, want[:, None], 1.0)


def compare_predictions(reference: list, other: list) -> dict:
    """Max |difference| of every tensor field of the entries both hold, and fields only one has."""
    worst, missing = 0.0, 0
    for a, b in zip(reference, other, strict=True):
        pa, pb = a.pred_instances, b.pred_instances
        for key in pa.keys():
            va, vb = pa.get(key), pb.get(key)
            if not isinstance(va, torch.Tensor):
                continue
            if vb is None:
                missing += int(torch.isfinite(va.float()).any())  # real values lost
                continue
            fa, fb = va.float(), vb.float()
            both = torch.isfinite(fa) & torch.isfinite(fb)
            worst = max(worst, float((fa[both] - fb[both]).abs().max()) if both.any() else 0.0)
    return dict(max_abs_diff=worst, fields_lost=missing)


def instrument(model, sec: Sections, script: Script) -> None:
    """Timers around the inference pieces, the scripted head, and post-generation marks."""
    import mmrefvlm.models.refvlm as refvlm_mod
    from mmrefvlm.models.generation import split_llm

    sec.wrap(model.data_preprocessor, 'forward', 'data preprocessor')
    sec.wrap(model, 'encode_images', 'encoders + projector')
    sec.wrap(model, 'embed_inputs', 'embed + splice (+ prompts)')
    decoder, head, _ = split_llm(model.llm)
    calls = dict(n=0)
    sec.wrap(decoder, 'forward', lambda: 'LLM prefill' if calls['n'] == 1 else 'LLM decode steps')
    llm_forward = decoder.forward

    def count_calls(*args, **kwargs):
        calls['n'] += 1
        return llm_forward(*args, **kwargs)

    decoder.forward = count_calls
    head_forward = head.forward

    def scripted_head(h):
        sec.push('LM head')
        try:
            return script.logits(head_forward(h))
        finally:
            sec.pop()

    head.forward = scripted_head
    generate = refvlm_mod.greedy_generate

    def generate_timed(*args, **kwargs):
        calls['n'], script.step = 0, 0
        sec.push('generation loop glue')
        try:
            return generate(*args, **kwargs)
        finally:
            sec.pop()
            sec.mark('generation_end')

    refvlm_mod.greedy_generate = generate_timed
    sec.wrap(refvlm_mod, 'find_refs', 'parse (find_refs)')
    sec.wrap(model.router, 'forward', 'route')
    for dec in model.unit_decoders.values():
        sec.wrap(dec, 'predict', 'visual decoders')
    sec.wrap(refvlm_mod, 'merge_instances', 'merge + detokenize')
    sec.wrap(model.tokenizer, 'decode', 'merge + detokenize')
    predict = model.predict

    def predict_timed(inputs, data_samples):
        sec.push('predict glue')
        try:
            return predict(inputs, data_samples)
        finally:
            sec.pop()
            sec.mark('predict_end')

    model.predict = predict_timed


def run_pass(model, samples, batch: int, sec: Sections, script: Script, keep: bool = False) -> dict:
    """All samples in batches of ``batch``; wall time, sections and post-generation time."""
    from mmrefvlm.datasets import refvlm_collate

    sec.reset()
    post, outputs = 0.0, []
    start = time.perf_counter()
    for i in range(0, len(samples), batch):
        script.batch_rows = torch.arange(i, min(i + batch, len(samples)))
        with torch.no_grad():
            data = model.data_preprocessor(refvlm_collate(samples[i : i + batch]), False)
            out = model.predict(data['inputs'], data['data_samples'])
        post += sec.marks['predict_end'] - sec.marks['generation_end']
        if keep:
            outputs += out
    total = time.perf_counter() - start
    return dict(total=total, post_generation=post, sections=dict(sec.exclusive), outputs=outputs)


def profile_top_ops(
    model, samples, batch: int, sec: Sections, script: Script, steps: int, top: int = 12
) -> list[dict]:
    """torch.profiler over one pass: the ops with the most self CPU time, ms per decode step."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        run_pass(model, samples, batch, sec, script)
    n_steps = steps * (len(samples) // batch)
    rows = sorted(prof.key_averages(), key=lambda e: -e.self_cpu_time_total)[:top]
    return [
        dict(
            op=e.key,
            calls_per_step=e.count / n_steps,
            self_ms_per_step=e.self_cpu_time_total / 1e3 / n_steps,
        )
        for e in rows
    ]


def summarise(runs: list[dict], base: list[dict], n: int, steps: int, batch: int) -> dict:
    """Throughput, speed-up vs the B = 1 passes, post-generation and per-section shares, and
    milliseconds per decode step / per prefill (medians over the rounds)."""
    times = [r['total'] for r in runs]
    names = sorted({k for r in runs for k in r['sections']})
    calls = n // batch

    def per(keys, count):
        return summarize(
            [sum(r['sections'].get(k, 0.0) for k in keys) / count * 1e3 for r in runs]
        )['median']

    return dict(
        ms_per_decode_step=per(
            ('LLM decode steps', 'LM head', 'generation loop glue'), calls * steps
        ),
        ms_per_prefill=per(('LLM prefill',), calls),
        ms_visual_decoders_per_call=per(('visual decoders',), calls),
        seconds_for_all=summarize(times),
        samples_per_s=n / summarize(times)['median'],
        tokens_per_s=n * steps / summarize(times)['median'],
        speedup_vs_b1=ratio_summary([r['total'] for r in base], times),
        post_generation_share=summarize([r['post_generation'] / r['total'] for r in runs]),
        section_shares={
            k: summarize([r['sections'].get(k, 0.0) / r['total'] for r in runs]) for k in names
        },
    )


def main(argv: list[str] | None = None) -> None:
    """Paper-scale mode with ``--config`` (:mod:`benchmarks.paper_inference`), else the demo."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if any(a == '--config' or a.startswith('--config=') for a in argv):
        from benchmarks.paper_inference import main as paper_main

        paper_main(argv)
        return
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--repeats', type=int, default=5, help='interleaved rounds')
    parser.add_argument('--max-new-tokens', type=int, default=48, help='T (demo config: 48)')
    parser.add_argument('--seed', type=int, default=0)
    args = parser.parse_args(argv)
    setup_single_thread()
    os.chdir(ROOT)
    model, samples = build(args.seed)
    model.max_new_tokens = args.max_new_tokens
    script = Script(model, samples, args.max_new_tokens)
    sec = Sections()
    instrument(model, sec, script)
    # The default (dynamic, grown by concatenation) KV cache at every B, and the static cache
    # (preallocated, written in place) at B = 1 and 8 as the alternative.
    variants = {f'B={b}': (b, 'dynamic') for b in BATCHES}
    variants.update({f'B={b}, static KV cache': (b, 'static') for b in (1, 8)})
    passes = {v: [] for v in variants}
    for rnd in range(args.repeats + 1):  # round 0 is a warm-up
        for name, (b, cache) in variants.items():
            model.generation_cache = cache
            res = run_pass(model, samples, b, sec, script, keep=rnd == 0)
            if rnd:
                passes[name].append(res)
            else:
                passes.setdefault('_outputs', {})[name] = res['outputs']
    model.generation_cache = 'dynamic'
    outputs = passes.pop('_outputs')
    consistency = {
        name: compare_predictions(outputs['B=1'], outputs[name])
        for name in variants
        if name != 'B=1'
    }
    n, steps = len(samples), args.max_new_tokens
    results = {
        name: summarise(runs, passes['B=1'], n, steps, variants[name][0])
        for name, runs in passes.items()
    }
    profiles = {f'B={b}': profile_top_ops(model, samples, b, sec, script, steps) for b in (1, 8)}
    model.generation_cache = 'static'
    profiles['B=8, static KV cache'] = profile_top_ops(model, samples, 8, sec, script, steps)
    model.generation_cache = 'dynamic'
    static_vs_dynamic = {
        f'B={b}': ratio_summary(
            [r['total'] for r in passes[f'B={b}']],
            [r['total'] for r in passes[f'B={b}, static KV cache']],
        )
        for b in (1, 8)
    }
    s8 = results['B=8']['speedup_vs_b1']
    post_worst = max(results[f'B={b}']['post_generation_share']['median'] for b in BATCHES)
    goals = dict(
        speedup_b8=dict(
            goal=SPEEDUP_GOAL * 8, value=s8['median'], met=s8['median'] >= SPEEDUP_GOAL * 8
        ),
        post_generation=dict(goal=POST_GOAL, worst_median=post_worst, met=post_worst <= POST_GOAL),
    )
    lengths = [len(s['inputs']['input_ids']) for s in samples]
    path = write_results(
        'inference',
        dict(
            command='python benchmarks/bench_inference.py',
            config=str(CONFIG.relative_to(ROOT)),
            tasks=list(TASKS),
            max_new_tokens=steps,
            repeats=args.repeats,
            scripted_answer_tokens=script.answer_lengths,
            prompt_lengths=lengths,
            padding_waste_b8=(len(lengths) * max(lengths) - sum(lengths)) / sum(lengths),
            results=results,
            goals=goals,
            consistency_vs_b1=consistency,
            static_vs_dynamic_cache_speedup=static_vs_dynamic,
            profile_top_ops_per_decode_step=profiles,
        ),
    )
    print_tables(results, goals, n, steps)
    for name, r in static_vs_dynamic.items():
        print(
            f'static vs dynamic KV cache at {name}: {r["median"]:.2f}x '
            f'[{r["low"]:.2f}, {r["high"]:.2f}]'
        )
    for name, c in consistency.items():
        print(
            f'{name} vs B=1 predictions: max |diff| {c["max_abs_diff"]:.2e}, '
            f'fields with values lost {c["fields_lost"]}'
        )
    for name, ops in profiles.items():
        print(
            f'top ops at {name} (self ms per decode step): '
            + '; '.join(f'{o["op"]} {o["self_ms_per_step"]:.3f}' for o in ops[:8])
        )
    print(f'wrote {path}')


def print_tables(results: dict, goals: dict, n: int, steps: int) -> None:
    rows = []
    for name, r in results.items():
        sp, post = r['speedup_vs_b1'], r['post_generation_share']
        rows.append(
            [
                name,
                f'{r["samples_per_s"]:.2f}',
                f'{r["tokens_per_s"]:.0f}',
                f'{sp["median"]:.2f}x [{sp["low"]:.2f}, {sp["high"]:.2f}]',
                f'{100 * post["median"]:.1f} [{100 * post["q1"]:.1f}, {100 * post["q3"]:.1f}]',
                f'{r["ms_per_decode_step"]:.2f}',
                f'{r["ms_per_prefill"]:.1f}',
                f'{r["ms_visual_decoders_per_call"]:.1f}',
            ]
        )
    print(
        format_table(
            [
                'variant',
                'samples/s',
                'tokens/s',
                'vs B=1 [q1/q3 bounds]',
                'post-generation % [q1, q3]',
                'ms/decode step',
                'ms/prefill',
                'ms decoders/call',
            ],
            rows,
        )
    )
    first = results['B=1']['section_shares']
    names = sorted(
        {k for r in results.values() for k in r['section_shares']},
        key=lambda k: -first.get(k, {'median': 0})['median'],
    )
    short = {name: name.split(',')[0] + ('*' if ',' in name else '') for name in results}
    rows = [
        [k]
        + [
            f'{100 * r["section_shares"].get(k, {"median": 0})["median"]:.1f}'
            for r in results.values()
        ]
        + ['post' if k in POST else '']
        for k in names
    ]
    print(format_table(['section (% of time)'] + list(short.values()) + ['phase'], rows))
    print('* = static KV cache')
    g1, g2 = goals['speedup_b8'], goals['post_generation']
    print(
        f'B=8 vs B=1: {g1["value"]:.2f}x (goal >= {g1["goal"]:.1f}x): '
        f'{"met" if g1["met"] else "MISSED"}; post-generation share (worst B): '
        f'{100 * g2["worst_median"]:.1f} % (goal <= 10 %): {"met" if g2["met"] else "MISSED"}; '
        f'{n} samples x {steps} tokens'
    )


if __name__ == '__main__':
    main()
