# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""Paper-scale training step on one device: time, throughput, MFU and peak memory per batch size.

Run (what ``benchmarks/gpu_paper_scale.sh`` does on a GPU)::

    python benchmarks/bench_train_step.py --config configs/refvlm/stage2_lora.py --device cuda \\
        --random-init --batch-sizes 1 2 4 8 16 --steps 3 --warmup 1 --time-limit 50
    python benchmarks/bench_train_step.py --config configs/refvlm/stage2_lora.py --device cpu \\
        --random-init --tiny --batch-sizes 1 2 --steps 1 --warmup 0        (CPU smoke test)

Method:

* the config's model with random 7B-shaped weights (:mod:`benchmarks.paper_model`), in training
  mode, the optimizer wrapper of the config (``NaNGuardAmpOptimWrapper``: bf16 autocast, grad
  clipping, AdamW) with ``accumulative_counts=1``, so every step is a real optimizer step; on a
  CPU, where MMEngine's AMP wrapper refuses to run, the same wrapper without AMP inside
  ``torch.autocast('cpu', torch.bfloat16)``;
* one synthetic batch per (sequence length, batch size) (:mod:`benchmarks.synthetic_batches`),
  fed every step through ``model.train_step`` (data preprocessor, ``RefVLM.loss``, the wrapper's
  ``update_params``), as MMEngine's loop does;
* ``--warmup`` untimed steps, then ``--steps`` timed ones, each between two
  ``torch.cuda.synchronize()``; the table gives the median; peak memory is
  ``torch.cuda.max_memory_allocated`` over the timed steps (reset before them), also split into the
  forward, backward and optimizer-step phases;
* MFU = model FLOPs of a step (:mod:`benchmarks.flops`) / (median step time x ``--peak-tflops``);
  HFU also counts the recomputed forward of activation checkpointing;
* the memory model's prediction (:func:`benchmarks.memory_model.predict_for_model`, decoder bytes
  measured with this model on this device) next to the measured peak; a relative difference above
  15 % is flagged;
* a CUDA out-of-memory error (or any other error) ends the sweep cleanly: it is recorded with its
  message, the remaining points are marked skipped, memory is freed; ``--time-limit`` skips the
  batch sizes that would not finish in time. The results file is rewritten after every batch
  size, so a run killed by an outer ``timeout`` keeps what it measured.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import time
import traceback
from dataclasses import asdict
from pathlib import Path

import torch

from benchmarks.common import CudaPhasePeaks, format_table, write_results
from benchmarks.flops import (
    LlamaShape,
    forward_flops,
    is_trained,
    llm_train_flops,
    refvlm_module_flops,
    step_flops,
)
from benchmarks.memory_model import (
    GIB,
    lora_rank,
    model_decoder_bytes,
    predict_for_model,
    unwrap_llm,
)
from benchmarks.paper_model import (
    TINY_MASK_SIZE,
    build_model,
    describe,
    load_model_cfg,
    make_optim_wrapper,
)
from benchmarks.synthetic_batches import BatchSpec, train_samples

H200_PEAK_TFLOPS = 989.0  # dense bf16, H100/H200 SXM data sheet (the issue quotes ~790)
ISSUE_PEAK_TFLOPS = 790.0
MEMORY_FLAG = 0.15


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The paper-scale options of ``bench_train_step.py``."""
    parser.add_argument('--device', default='cpu', choices=['cpu', 'cuda'])
    parser.add_argument('--random-init', action='store_true', help='random 7B-shaped weights')
    parser.add_argument('--tiny', action='store_true', help='shrink every module (CPU tests)')
    parser.add_argument('--batch-sizes', type=int, nargs='+', default=[1, 2, 4, 8, 16])
    parser.add_argument('--seq-len', type=int, nargs='+', default=None, help='default 1024')
    parser.add_argument('--answer-tokens', type=int, default=None, help='labelled, default 256')
    parser.add_argument('--refs', type=int, default=None, help='<REF>s per sample per unit (4)')
    parser.add_argument('--prompt-every', type=int, default=4, help='visual prompt every k-th')
    parser.add_argument('--steps', type=int, default=5, help='timed steps per batch size')
    parser.add_argument('--warmup', type=int, default=1, help='untimed steps per batch size')
    parser.add_argument('--time-limit', type=float, default=None, help='seconds for the run')
    parser.add_argument(
        '--gradient-checkpointing', choices=['config', 'on', 'off'], default='config'
    )
    parser.add_argument('--peak-tflops', type=float, default=H200_PEAK_TFLOPS)
    parser.add_argument('--no-step-flop-count', action='store_true')
    parser.add_argument('--name', default=None, help='results file name (without .json)')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--cfg-options', nargs='+', default=None, metavar='KEY=VALUE')


def batch_spec(args, seq_len: int, cfg) -> BatchSpec:
    """The synthetic-batch shape for ``seq_len`` (tiny defaults with ``--tiny``)."""
    tiny = args.tiny
    answer = args.answer_tokens or (144 if tiny else 256)
    return BatchSpec(
        seq_len=seq_len,
        answer_tokens=answer,
        refs_per_unit=args.refs or (2 if tiny else 4),
        prompt_every=args.prompt_every,
        mask_size=TINY_MASK_SIZE if tiny else int(cfg.get('mask_size', 336)),
        seed=args.seed,
    )


def _sync(device: torch.device) -> None:
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def _free(device: torch.device) -> None:
    gc.collect()
    if device.type == 'cuda':
        torch.cuda.empty_cache()


class Bench:
    """One model + optimizer wrapper; :meth:`measure` runs one (sequence length, batch) point."""

    def __init__(self, args, cfg, model, ow, ctx) -> None:
        self.args, self.cfg, self.model, self.ow, self.ctx = args, cfg, model, ow, ctx
        self.device = torch.device(args.device)
        self.peaks = CudaPhasePeaks(ow, self.device)
        self.shape = LlamaShape.from_hf_config(unwrap_llm(model).config)
        decoder_stack = unwrap_llm(model).get_decoder()
        self.checkpointing = bool(getattr(decoder_stack, 'gradient_checkpointing', False))
        self.base_trainable = any(
            p.requires_grad
            for n, p in model.llm.named_parameters()
            if 'lora_' not in n and 'layers' in n
        )
        peft_cfg = getattr(model.llm, 'peft_config', {}).get('default')
        self.lora_targets = sorted(getattr(peft_cfg, 'target_modules', None) or [])
        head = unwrap_llm(model).get_output_embeddings()
        self.head_trainable = is_trained(head)
        self.module_flops: dict = {}
        self.decoder_bytes: dict[int, float] = {}

    def step(self, data) -> None:
        with self.ctx():
            self.model.train_step(data, self.ow)

    def flops(self, spec: BatchSpec, batch: int, labelled: int) -> dict:
        """Model / 6N / hardware FLOPs of one step (see benchmarks/flops.py)."""
        if spec.refs_per_unit not in self.module_flops:
            self.module_flops[spec.refs_per_unit] = refvlm_module_flops(
                self.model, refs=spec.refs_per_unit, device=self.device
            )
        llm = llm_train_flops(
            self.shape,
            batch=batch,
            seq=spec.seq_len,
            labelled=labelled,
            base_trainable=self.base_trainable,
            head_trainable=self.head_trainable,
            lora_r=lora_rank(self.model),
            lora_targets=self.lora_targets,
            checkpointing=self.checkpointing,
        )
        return step_flops(llm, self.module_flops[spec.refs_per_unit], batch)

    def predicted(self, spec: BatchSpec, batch: int) -> dict:
        """The memory model's prediction for this point."""
        if spec.refs_per_unit not in self.decoder_bytes:
            self.decoder_bytes[spec.refs_per_unit] = model_decoder_bytes(
                self.model, refs=spec.refs_per_unit, device=self.device
            )
        return predict_for_model(
            self.model,
            batch=batch,
            seq=spec.seq_len,
            answer=spec.answer_tokens,
            checkpointing=self.checkpointing,
            decoder_per_sample=self.decoder_bytes[spec.refs_per_unit],
        )

    def measure(self, spec: BatchSpec, batch: int, deadline: float, count_flops: bool) -> dict:
        """Warm-up + timed steps of one batch; see the module docstring for every number."""
        from mmrefvlm.datasets import refvlm_collate

        data = refvlm_collate(train_samples(self.model, batch, spec))
        labelled = int(sum((d['labels'][1:] != -100).sum() for d in data['inputs']))
        times: list[float] = []
        args = self.args
        for i in range(args.warmup + args.steps):
            if i == args.warmup:
                _sync(self.device)
                self.peaks.reset()
            elif i > args.warmup and time.perf_counter() > deadline:
                break  # keep the timed steps so far (at least one)
            _sync(self.device)
            start = time.perf_counter()
            self.step(data)
            _sync(self.device)
            if i >= args.warmup:
                times.append(time.perf_counter() - start)
        peak = self.peaks.overall()
        phases = dict(self.peaks.peaks)
        allocated = torch.cuda.memory_allocated() if self.device.type == 'cuda' else None
        step = statistics.median(times)
        fl = self.flops(spec, batch, labelled)
        peak_flops = args.peak_tflops * 1e12
        rec = dict(
            seq_len=spec.seq_len,
            batch=batch,
            status='ok',
            steps=len(times),
            step_s=dict(median=step, min=min(times), max=max(times), all=times),
            samples_per_s=batch / step,
            tokens_per_s=batch * spec.seq_len / step,
            labelled_tokens=labelled,
            flops=fl,
            achieved_tflops=fl['model'] / step / 1e12,
            mfu=fl['model'] / step / peak_flops,
            mfu_at_790=fl['model'] / step / (ISSUE_PEAK_TFLOPS * 1e12),
            mfu_6n=fl['flops_6n'] / step / peak_flops,
            hfu=fl['hardware'] / step / peak_flops,
            peak_bytes=peak,
            phase_peak_bytes=phases,
            allocated_between_steps=allocated,
            nonfinite_skips=getattr(self.ow, 'num_skipped', None),
        )
        pred = self.predicted(spec, batch)
        rec['memory_model'] = dict(
            predicted_total=pred['total'],
            static=pred['static'],
            activations=pred['activations'],
            rel_diff=None if peak is None else (pred['total'] - peak) / peak,
        )
        if count_flops:
            rec['flop_counter_step'] = self.count_step_flops(data, fl)
        return rec

    def count_step_flops(self, data, fl: dict) -> dict:
        """Cross-check: ``FlopCounterMode`` over one more (untimed) step, recompute included."""
        try:
            measured = forward_flops(lambda: self.step(data))
        except Exception as err:  # noqa: BLE001 - a cross-check must not end the run
            self.ow.zero_grad()
            return dict(error=f'{type(err).__name__}: {str(err)[:300]}')
        return dict(measured=measured, ratio_to_hardware_formula=measured / fl['hardware'])


def run(args) -> dict:
    """Build, sweep the batch sizes, write ``results/<name>.json``; return the results."""
    start = time.perf_counter()
    deadline = start + (args.time_limit if args.time_limit else float('inf'))
    device = torch.device(args.device)
    ckpt = dict(config=None, on=True, off=False)[args.gradient_checkpointing]
    from mmengine.config import DictAction

    options = None
    if args.cfg_options:
        ns = argparse.Namespace()
        DictAction(option_strings=[], dest='o')(None, ns, args.cfg_options)
        options = ns.o
    cfg, model_cfg, changes = load_model_cfg(
        args.config,
        cfg_options=options,
        tiny=args.tiny,
        random_init=args.random_init,
        gradient_checkpointing=ckpt,
    )
    torch.manual_seed(args.seed)
    model, startup = build_model(model_cfg, device, random_init=args.random_init, seed=args.seed)
    ow, ctx = make_optim_wrapper(cfg, model, device)
    startup['total'] = time.perf_counter() - start
    name = args.name or f'train_step_{Path(args.config).stem}_{args.device}' + (
        '_tiny' if args.tiny else ''
    )
    bench = Bench(args, cfg, model, ow, ctx)
    out = dict(
        command='python benchmarks/bench_train_step.py ' + ' '.join(args.argv),
        config=args.config,
        device=torch.cuda.get_device_name() if device.type == 'cuda' else 'cpu',
        torch=torch.__version__,
        random_init=args.random_init,
        changes=changes,
        model=describe(model),
        gradient_checkpointing=bench.checkpointing,
        lora_r=lora_rank(model),
        optim_wrapper=type(ow).__name__,
        autocast='bf16 (AmpOptimWrapper)' if device.type == 'cuda' else 'bf16 (CPU autocast)',
        peak_tflops=args.peak_tflops,
        memory_flag=MEMORY_FLAG,
        startup_s=startup,
        points=[],
    )
    stopped = None
    for seq in args.seq_len or ([224] if args.tiny else [1024]):
        spec = batch_spec(args, seq, cfg)
        out.setdefault('batch_spec', {})[str(seq)] = asdict(spec)
        per_sample = None
        for batch in args.batch_sizes:
            left = deadline - time.perf_counter()
            if stopped is not None:
                out['points'].append(dict(seq_len=seq, batch=batch, status='skipped'))
                continue
            if per_sample is not None and per_sample * batch * (args.warmup + args.steps) > left:
                out['points'].append(dict(seq_len=seq, batch=batch, status='skipped: time limit'))
                continue
            count = not out['points'] and not args.no_step_flop_count
            try:
                rec = bench.measure(spec, batch, deadline, count_flops=count)
            except torch.OutOfMemoryError as err:
                # The run stops at the first OOM or error (larger batches would not fit either,
                # and the AMP scaler may be mid-step); memory is freed once the traceback is gone.
                stopped = str(err).split('\n')[0]
                rec = dict(seq_len=seq, batch=batch, status='oom', error=stopped)
            except Exception as err:  # noqa: BLE001 - keep what was measured, say what failed
                traceback.print_exc()
                stopped = f'{type(err).__name__}: {str(err)[:500]}'
                rec = dict(seq_len=seq, batch=batch, status='error', error=stopped)
            per_sample = rec['step_s']['median'] / batch if rec['status'] == 'ok' else per_sample
            out['points'].append(rec)
            out['seconds'] = time.perf_counter() - start
            write_results(name, out)
        if stopped is not None:
            bench.ow.zero_grad()
            _free(device)
    out['seconds'] = time.perf_counter() - start
    path = write_results(name, out)
    print(report(out))
    print(f'wrote {path}')
    return out


def report(out: dict) -> str:
    """Markdown table of the points (times in s, memory in GiB)."""
    rows = []
    for p in out['points']:
        if p['status'] != 'ok':
            rows.append([p['seq_len'], p['batch']] + [''] * 9 + [p['status']])
            continue
        mm = p['memory_model']
        peak = p['peak_bytes']
        diff = '' if mm['rel_diff'] is None else f'{100 * mm["rel_diff"]:+.1f} %'
        flag = (
            ' (>15 %)' if mm['rel_diff'] is not None and abs(mm['rel_diff']) > MEMORY_FLAG else ''
        )
        rows.append(
            [
                p['seq_len'],
                p['batch'],
                f'{p["step_s"]["median"]:.3f}',
                f'{p["samples_per_s"]:.2f}',
                f'{p["tokens_per_s"]:.0f}',
                f'{p["achieved_tflops"]:.1f}',
                f'{100 * p["mfu"]:.1f}',
                f'{100 * p["mfu_at_790"]:.1f}',
                f'{100 * p["hfu"]:.1f}',
                '-' if peak is None else f'{peak / GIB:.1f}',
                f'{mm["predicted_total"] / GIB:.1f}',
                diff + flag or 'ok',
            ]
        )
    head = [
        'seq',
        'batch',
        'step s',
        'samples/s',
        'tokens/s',
        'TFLOP/s',
        f'MFU % @{out["peak_tflops"]:.0f}',
        'MFU % @790',
        'HFU %',
        'peak GiB',
        'model GiB',
        'model vs peak / status',
    ]
    title = (
        f'{out["config"]} on {out["device"]} ({out["model"]["parameters"] / 1e9:.2f} B parameters,'
        f' {out["model"]["trainable"] / 1e6:.1f} M trained, checkpointing '
        f'{out["gradient_checkpointing"]}, start-up {out["startup_s"]["total"]:.1f} s)'
    )
    return title + '\n' + format_table(head, rows)


def main(argv: list[str]) -> None:
    """``bench_train_step.py --config CONFIG ...`` (paper-scale mode)."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--config', required=True, help='e.g. configs/refvlm/stage2_lora.py')
    add_arguments(parser)
    args = parser.parse_args(argv)
    args.argv = list(argv)
    if args.device == 'cuda' and not torch.cuda.is_available():
        raise SystemExit('--device cuda: CUDA is not available on this machine')
    run(args)
