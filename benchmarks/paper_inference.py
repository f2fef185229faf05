# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""Paper-scale inference throughput: generated tokens/s at B = 1, 8, 32 with the 7B-shaped model.

Run (what ``benchmarks/gpu_paper_scale.sh`` does on a GPU)::

    python benchmarks/bench_inference.py --config configs/refvlm/stage2.py --device cuda \\
        --random-init --batch-sizes 1 8 32 --max-new-tokens 32

Method:

* the config's model with random weights (:mod:`benchmarks.paper_model`), in eval mode, the LLM
  in ``--llm-dtype`` (default bf16: ``stage2.py`` keeps its trainable LLM in fp32 for AdamW, an
  inference deployment would not), encoders as configured, under bf16 autocast;
* prompts as the test pipeline packs them (:func:`benchmarks.synthetic_batches.predict_samples`:
  BOS, text, 576 ``<image>`` tokens, text; 32-96 text tokens, so batches are left-padded), through
  ``refvlm_collate`` and the data preprocessor (``training=False``: left padding);
* one call = ``RefVLM.encode_images`` + ``embed_inputs`` + ``greedy_generate`` (the path of
  ``RefVLM.predict`` before the TRP parse) with the KV cache of ``--cache``; ``eos_id=-1``, so
  every sample generates exactly ``T = --max-new-tokens`` tokens whatever the random weights
  emit (the post-generation stage is measured by the CPU mode of ``bench_inference.py``);
* every call is timed between two ``torch.cuda.synchronize()``; each batch size runs ``T`` tokens
  and 1 token per round (round 0 untimed), interleaved over batch sizes; tokens/s = B x T /
  median time; decode ms/step = (t_T - t_1) / (T - 1); prefill (encoders + prompt) ~ t_1;
* goal: tokens/s at B = 8 >= 0.7 x 8 x tokens/s at B = 1 (5.6x).
"""

from __future__ import annotations

import argparse
import statistics
import time
import traceback
from pathlib import Path

import torch

from benchmarks.common import format_table, write_results
from benchmarks.paper_model import build_model, describe, load_model_cfg

SPEEDUP_GOAL = 0.7 * 8


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--config', required=True, help='e.g. configs/refvlm/stage2.py')
    parser.add_argument('--device', default='cpu', choices=['cpu', 'cuda'])
    parser.add_argument('--random-init', action='store_true', help='random 7B-shaped weights')
    parser.add_argument('--tiny', action='store_true', help='shrink every module (CPU tests)')
    parser.add_argument('--batch-sizes', type=int, nargs='+', default=[1, 8, 32])
    parser.add_argument('--max-new-tokens', type=int, default=32)
    parser.add_argument(
        '--prompt-text', type=int, nargs=2, default=[32, 96], metavar=('MIN', 'MAX')
    )
    parser.add_argument('--repeats', type=int, default=2, help='timed rounds (+1 warm-up)')
    parser.add_argument('--cache', choices=['dynamic', 'static'], default='dynamic')
    parser.add_argument('--llm-dtype', default='bfloat16')
    parser.add_argument('--time-limit', type=float, default=None, help='seconds for the run')
    parser.add_argument('--name', default=None, help='results file name (without .json)')
    parser.add_argument('--seed', type=int, default=0)
    args = parser.parse_args(argv)
    args.argv = list(argv)
    if args.max_new_tokens < 2:
        parser.error('--max-new-tokens must be at least 2 (decode time = (t_T - t_1) / (T - 1))')
    if args.device == 'cuda' and not torch.cuda.is_available():
        parser.error('--device cuda: CUDA is not available on this machine')
    return args


class Generator:
    """One prepared batch per batch size and the timed generation call."""

    def __init__(self, model, args) -> None:
        from benchmarks.synthetic_batches import predict_samples
        from mmrefvlm.datasets import refvlm_collate
        from mmrefvlm.models.generation import greedy_generate

        self.model, self.args = model, args
        self.device = torch.device(args.device)
        self.generate = greedy_generate
        self.batches = {
            b: refvlm_collate(
                predict_samples(model, b, prompt_text=tuple(args.prompt_text), seed=args.seed)
            )
            for b in args.batch_sizes
        }

    def _sync(self) -> None:
        if self.device.type == 'cuda':
            torch.cuda.synchronize(self.device)

    @torch.no_grad()
    def __call__(self, batch: int, tokens: int) -> tuple[float, int]:
        """Seconds of one call (preprocess, encoders, prompt, ``tokens`` steps), prompt length."""
        model = self.model
        self._sync()
        start = time.perf_counter()
        with torch.autocast(self.device.type, dtype=torch.bfloat16):
            data = model.data_preprocessor(self.batches[batch], False)
            inputs = data['inputs']
            vis, image_tokens = model.encode_images(inputs, data['data_samples'])
            embeds, _ = model.embed_inputs(inputs, vis, image_tokens)
            out = self.generate(
                model.llm,
                embeds,
                inputs['attention_mask'],
                eos_id=-1,  # never: every sample generates exactly `tokens` tokens
                pad_id=model.tokenizer.ids.pad,
                max_new_tokens=tokens,
                cache=self.args.cache,
            )
        self._sync()
        if out.tokens.shape[1] != tokens:
            raise RuntimeError(f'generated {out.tokens.shape[1]} tokens, expected {tokens}')
        return time.perf_counter() - start, int(inputs['input_ids'].shape[1])


def run(args) -> dict:
    """Build, time every batch size, write ``results/<name>.json``; return the results."""
    start = time.perf_counter()
    deadline = start + (args.time_limit if args.time_limit else float('inf'))
    device = torch.device(args.device)
    _, model_cfg, changes = load_model_cfg(
        args.config, tiny=args.tiny, random_init=args.random_init, llm_dtype=args.llm_dtype
    )
    model, startup = build_model(model_cfg, device, random_init=args.random_init, seed=args.seed)
    model.eval()
    startup['total'] = time.perf_counter() - start
    gen = Generator(model, args)
    T = args.max_new_tokens
    name = args.name or f'inference_{Path(args.config).stem}_{args.device}' + (
        '_tiny' if args.tiny else ''
    )
    status = {b: 'ok' for b in args.batch_sizes}
    times: dict[int, dict[int, list[float]]] = {b: {T: [], 1: []} for b in args.batch_sizes}
    prompt_len: dict[int, int] = {}
    for rnd in range(args.repeats + 1):
        for b in args.batch_sizes:
            if status[b] != 'ok':
                continue
            if rnd > 0 and time.perf_counter() > deadline:
                status[b] = status[b] if times[b][T] else 'skipped: time limit'
                continue
            try:
                for tokens in (T, 1):
                    sec, prompt_len[b] = gen(b, tokens)
                    if rnd > 0:
                        times[b][tokens].append(sec)
            except torch.OutOfMemoryError as err:
                status[b] = 'oom: ' + str(err).split('\n')[0]
            except Exception as err:  # noqa: BLE001 - keep what was measured, say what failed
                traceback.print_exc()
                status[b] = f'error: {type(err).__name__}: {str(err)[:300]}'
            if status[b] != 'ok':
                for other in args.batch_sizes:
                    if other > b or status[b].startswith('error'):
                        status[other] = status[other] if other == b else 'skipped'
        if device.type == 'cuda':
            torch.cuda.empty_cache()
        results, ratios = summarise(args, status, times, prompt_len)  # kept if killed later
        write_results(name, dict(args=args.argv, results=results, throughput_ratio=ratios))
    results, ratios = summarise(args, status, times, prompt_len)
    r8 = ratios.get('B=8/B=1')
    out = dict(
        command='python benchmarks/bench_inference.py ' + ' '.join(args.argv),
        config=args.config,
        device=torch.cuda.get_device_name() if device.type == 'cuda' else 'cpu',
        torch=torch.__version__,
        changes=changes,
        model=describe(model),
        max_new_tokens=T,
        cache=args.cache,
        startup_s=startup,
        results=results,
        throughput_ratio=ratios,
        goal=dict(
            b8_over_b1=SPEEDUP_GOAL, value=r8, met=None if r8 is None else r8 >= SPEEDUP_GOAL
        ),
        seconds=time.perf_counter() - start,
    )
    path = write_results(name, out)
    print(report(out))
    print(f'wrote {path}')
    return out


def summarise(args, status, times, prompt_len) -> tuple[dict, dict]:
    """Per-batch results and the throughput ratios from the timings so far."""
    T = args.max_new_tokens
    results = {}
    for b in args.batch_sizes:
        if not (times[b][T] and times[b][1]):
            results[str(b)] = dict(status=status[b] if status[b] != 'ok' else 'not timed')
            continue
        t_full, t_one = statistics.median(times[b][T]), statistics.median(times[b][1])
        results[str(b)] = dict(
            status=status[b] if status[b] == 'ok' else f'partial, then {status[b]}',
            prompt_len=prompt_len[b],
            seconds=dict(full=times[b][T], one_token=times[b][1]),
            tokens_per_s=b * T / t_full,
            decode_ms_per_step=1e3 * (t_full - t_one) / (T - 1),
            prefill_s=t_one,
            decode_tokens_per_s=b * (T - 1) / max(t_full - t_one, 1e-9),
        )
    ok = {int(b): r for b, r in results.items() if 'tokens_per_s' in r}
    ratios = {
        f'B={b}/B=1': r['tokens_per_s'] / ok[1]['tokens_per_s'] for b, r in ok.items() if 1 in ok
    }
    return results, ratios


def report(out: dict) -> str:
    """Markdown table of the batch sizes."""
    rows = []
    for b, r in out['results'].items():
        if 'tokens_per_s' not in r:
            rows.append([b, '', '', '', '', '', r['status']])
            continue
        ratio = out['throughput_ratio'].get(f'B={b}/B=1')
        rows.append(
            [
                b,
                r['prompt_len'],
                f'{r["tokens_per_s"]:.1f}',
                f'{r["decode_ms_per_step"]:.1f}',
                f'{r["prefill_s"]:.3f}',
                '' if ratio is None else f'{ratio:.2f}x',
                r['status'],
            ]
        )
    goal = out['goal']
    met = {None: 'not measured', True: 'met', False: 'MISSED'}[goal['met']]
    return (
        f'{out["config"]} on {out["device"]}, {out["max_new_tokens"]} new tokens, '
        f'{out["cache"]} KV cache\n'
        + format_table(
            ['B', 'prompt', 'tokens/s', 'decode ms/step', 'prefill s', 'vs B=1', 'status'], rows
        )
        + f'\nB=8 vs B=1 goal >= {SPEEDUP_GOAL:.1f}x: {met}'
    )


def main(argv: list[str]) -> None:
    """``bench_inference.py --config CONFIG ...`` (paper-scale mode)."""
    run(parse_args(argv))
