# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""Training-step breakdown of the tiny demo config inside a real MMEngine ``Runner``.

Run: ``python benchmarks/bench_train_step.py [--device cuda]`` (about 1-2 minutes; writes
``benchmarks/results/train_step[_cuda].json`` and prints the table). With ``--device cuda`` every
section boundary synchronises the GPU, so each section holds its device time.

With ``--config CONFIG`` naming another config (e.g. ``configs/refvlm/stage2_lora.py``), the
script runs the paper-scale measurement instead (step time, throughput, MFU, peak memory per batch
size, on ``--device cpu|cuda``): see :mod:`benchmarks.paper_scale` for its options and method.

Method: ``configs/refvlm/demo_stage2.py`` (batch 8, all demo tasks, the four decoders) is built with
``Runner.from_cfg`` and trained for ``--warmup + --iters`` iterations with its own hooks (timer,
logger, scheduler, checkpoint; validation disabled). A ``before_train`` hook instruments, in this
process only, the pieces of one step with nested wall-clock timers (:mod:`benchmarks.step_timers`):
the dataloader's ``next`` (sampling, the dataset pipeline for 8 samples, collate), the data
preprocessor, ``RefVLM.loss`` and inside it the CLIP-ViT, the ConvNeXt pyramid, the projector, the
visual-prompt encoder, token embedding + splicing, the LLM decoder stack, the LM head + CE, the
router (``_plan_step``: the host plan of the step, and ``router.pack``), each decoder's loss with
the grouped matching (every ``mmrefvlm.models.matchers`` cost/assignment function it calls, and
the one solve of all decoders) timed apart, and the fake inputs (decoder forwards outside ``loss``
and the fake visual prompt); then ``parse_losses``, ``optim_wrapper.backward``, ``step`` (grad
clipping + AdamW) and ``zero_grad``.
Every other measured step runs a benchmark-local prototype in which each decoder's ``loss`` only
sees the samples that have queries of its unit (identical losses and gradients); those steps are
reported apart and are not in the breakdown. The backward is split with gradient hooks on the LLM's
output and input embeddings into decoder + LM-head backward, LLM backward, and projector + encoder
backward. **Runner overhead** = step time (from one ``next`` to the next) minus every timed section
(hooks, logging, the loop).

Cross-check: a few more steps run under ``torch.profiler``; every autograd node of the backward
is charged to the forward section that created it (sequence numbers), giving an independent
forward/backward split per component.

Goal: everything that is not model forward/backward/optimizer <= 15 % of the step. Counted as
*not model*: data loading, data preprocessor, router, matching, fake-input forwards, loss parsing
and runner overhead.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.common import format_table, setup_single_thread, summarize, write_results  # noqa: E402
from benchmarks.step_timers import Sections, attribute_profile  # noqa: E402

CONFIG = ROOT / 'configs' / 'refvlm' / 'demo_stage2.py'
GOAL = 0.15
NOT_MODEL = (
    'data loading',
    'data preprocessor',
    'router',
    'matching',
    'fake inputs',
    'loss parsing',
    'runner overhead',
)
BACKWARD_PARTS = ('backward: decoders + LM head', 'backward: LLM', 'backward: projector + encoders')
MATCH_WORDS = ('match', 'assign', 'cost', 'group')


class TimedIterator:
    """Proxy of the loop's dataloader iterator: a step starts at every ``next`` (``on_step``
    closes the previous one), and the ``next`` itself is the data loading."""

    def __init__(self, it, sections: Sections, on_step) -> None:
        self.it, self.sections, self.on_step = it, sections, on_step

    def __iter__(self):
        return self

    def __next__(self):
        self.on_step(self.sections.now())
        self.sections.push('data loading')
        try:
            return next(self.it)
        finally:
            self.sections.pop()

    def __getattr__(self, name):
        return getattr(self.it, name)


def install_row_selection(dec, flag: dict) -> None:
    """Prototype (benchmark-local): with ``flag['on']`` the decoder's ``loss`` runs only on the
    samples that have queries of its unit (same losses and gradients: padded slots never enter
    a loss and the decoders normalise per sample, GroupNorm)."""
    from mmrefvlm.structures import UnitQueries, VisualContext

    orig = dec.loss

    def loss(queries, visual, samples):
        rows = queries.mask.any(1).nonzero(as_tuple=True)[0]
        if not flag['on'] or len(rows) in (0, len(samples)):  # 0: the fake-input call
            return orig(queries, visual, samples)
        q = UnitQueries(
            embeds=queries.embeds[rows], mask=queries.mask[rows], group_ids=queries.group_ids[rows]
        )
        v = VisualContext(
            pyramid=tuple(p[rows] for p in visual.pyramid),
            clip=visual.clip[rows],
            valid_hw=visual.valid_hw[rows],
        )
        return orig(q, v, [samples[i] for i in rows.tolist()])

    dec.loss = loss


def instrument(runner, sec: Sections, on_step, rows_flag: dict) -> None:
    """Wrap the loop, model and optimizer wrapper of ``runner`` with section timers."""
    import mmrefvlm.models.refvlm as refvlm_mod

    loop, model, ow = runner.train_loop, runner.model, runner.optim_wrapper
    loop.dataloader_iterator = TimedIterator(loop.dataloader_iterator, sec, on_step)
    state = dict(fake_prompt=False)
    sec.wrap(model.data_preprocessor, 'forward', 'data preprocessor')
    sec.wrap(model, 'loss', 'model glue')
    sec.wrap(model, 'encode_images', 'model glue')
    sec.wrap(model.vision_encoder, 'forward', 'vision encoder (CLIP-ViT)')
    if model.pyramid_encoder is not None:
        sec.wrap(model.pyramid_encoder, 'forward', 'pyramid encoder (ConvNeXt)')
    fake_or = lambda name: lambda: 'fake inputs' if state['fake_prompt'] else name  # noqa: E731
    sec.wrap(model.projector, 'forward', fake_or('projector'))
    sec.wrap(model.prompt_encoder, 'forward', fake_or('visual-prompt encoder'))
    embed_inputs = model.embed_inputs

    def embed_inputs_timed(inputs, *args, **kwargs):
        state['fake_prompt'] = model.training and inputs['prompt_masks'].shape[0] == 0
        sec.push('embeddings + splice')
        try:
            return embed_inputs(inputs, *args, **kwargs)
        finally:
            sec.pop()
            state['fake_prompt'] = False

    model.embed_inputs = embed_inputs_timed
    _wrap_llm(model, sec)
    sec.wrap(refvlm_mod, 'lm_loss', 'LM head + CE')
    sec.wrap(model, '_plan_step', 'router')  # host plan: token indices, routing, matching layout
    sec.wrap(model.router, 'pack', 'router')
    for unit, dec in model.unit_decoders.items():
        install_row_selection(dec, rows_flag)
        _wrap_decoder(dec, unit, sec)
    _wrap_matchers(sec)
    _wrap_optimizer(model, ow, sec)


def _wrap_decoder(dec, unit: str, sec: Sections) -> None:
    """Time a decoder; its work on fake inputs (a ``loss`` call without real queries, or a
    ``forward`` outside ``loss``, whichever way ``RefVLM`` feeds inactive decoders) is
    'fake inputs'."""
    loss = dec.loss

    def loss_timed(queries, visual, samples):
        sec.push(f'decoder: {unit}' if queries.num_queries else 'fake inputs')
        try:
            return loss(queries, visual, samples)
        finally:
            sec.pop()

    dec.loss = loss_timed
    inside = (f'decoder: {unit}', 'fake inputs')
    for phase in ('loss_costs', 'loss_assigned'):  # the two-phase loss (batched matching)
        if phase in type(dec).__dict__:
            sec.wrap(dec, phase, lambda: sec.top() if sec.top() in inside else f'decoder: {unit}')
    sec.wrap(dec, 'forward', lambda: sec.top() if sec.top() in inside else 'fake inputs')


def _wrap_llm(model, sec: Sections) -> None:
    """Time the LLM decoder stack; mark when the gradients of its output and input arrive."""
    from mmrefvlm.models.generation import split_llm

    decoder, _, _ = split_llm(model.llm)
    llm_forward = decoder.forward

    def llm_timed(*args, **kwargs):
        sec.push('LLM')
        try:
            out = llm_forward(*args, **kwargs)
        finally:
            sec.pop()
        if torch.is_grad_enabled():
            embeds = kwargs.get('inputs_embeds')
            if embeds is not None and embeds.requires_grad:
                embeds.register_hook(lambda g: sec.mark('grad_embeds'))
            if out.last_hidden_state.requires_grad:
                out.last_hidden_state.register_hook(lambda g: sec.mark('grad_hidden'))
        return out

    decoder.forward = llm_timed


def _wrap_optimizer(model, ow, sec: Sections) -> None:
    """Time loss parsing, backward (with its start mark and duration), step and zero_grad."""
    sec.wrap(model, 'parse_losses', 'loss parsing')
    backward = ow.backward

    def backward_timed(loss, **kwargs):
        sec.mark('backward_start')
        sec.push('backward')
        try:
            return backward(loss, **kwargs)
        finally:
            sec.marks['backward_s'] = sec.pop()

    ow.backward = backward_timed
    sec.wrap(ow, 'step', 'optimizer step (clip + AdamW)')
    if hasattr(ow, '_grads_finite'):  # NaNGuardOptimWrapper's gradient-norm check
        sec.wrap(ow, '_grads_finite', 'optimizer step (clip + AdamW)')
    sec.wrap(ow, 'zero_grad', 'optimizer zero_grad')


def _wrap_matchers(sec: Sections) -> None:
    """Time every matcher function the decoder modules imported (costs, assignment, layout)."""
    import inspect

    for name, mod in list(sys.modules.items()):
        owners = ('mmrefvlm.models.unit_decoders', 'mmrefvlm.models.refvlm_loss')
        if not name.startswith(owners) or mod is None:
            continue
        for attr, obj in list(vars(mod).items()):
            if (
                inspect.isfunction(obj)
                and (obj.__module__.startswith('mmrefvlm.models.matchers') or 'costs' in attr)
                and any(w in attr for w in MATCH_WORDS)
            ):
                sec.wrap(mod, attr, 'matching')


def split_backward(marks: dict[str, float]) -> dict[str, float]:
    """Split one backward call at the gradient-hook marks (LLM output, LLM input embeddings)."""
    start, total = marks['backward_start'], marks['backward_s']
    end = start + total
    hid, emb = marks.get('grad_hidden'), marks.get('grad_embeds')
    if hid is None or emb is None or not start <= hid <= emb <= end:
        return {'backward: unsplit': total}
    return {
        BACKWARD_PARTS[0]: hid - start,
        BACKWARD_PARTS[1]: emb - hid,
        BACKWARD_PARTS[2]: end - emb,
    }


def build_runner(args, work_dir: str):
    from mmrefvlm.apis import build_runner as build
    from mmrefvlm.apis import load_config
    from mmrefvlm.datasets import ensure_demo_dataset

    ensure_demo_dataset(str(ROOT / 'data' / 'demo'))
    cfg = load_config(str(CONFIG), work_dir=work_dir)
    total = args.warmup + args.iters + args.profile_iters
    cfg.train_cfg.max_iters = total
    cfg.train_cfg.val_begin = 10**9  # no validation inside the measured run
    cfg.default_hooks.checkpoint.interval = 10**9
    cfg.log_level = 'WARNING'
    return build(cfg)


class StepRecorder:
    """Closes a step at every ``next`` of the dataloader: its duration, exclusive section times,
    backward split and the remainder (runner overhead). Runs the profiler over the last steps."""

    def __init__(self, sec: Sections, warmup: int, iters: int) -> None:
        self.sec, self.warmup, self.iters = sec, warmup, iters
        self.index, self.prev = -1, None
        self.steps: list[dict[str, float]] = []
        self.prototype_steps: list[dict[str, float]] = []
        self.rows_flag = dict(on=False)  # odd measured steps run the row-selection prototype
        self.profiler = None

    def __call__(self, now: float) -> None:
        if self.prev is not None and self.warmup <= self.index < self.warmup + self.iters:
            parts = dict(self.sec.exclusive)
            parts.update(split_backward(self.sec.marks) if 'backward' in parts else {})
            parts.pop('backward', None)
            step = now - self.prev
            parts['runner overhead'] = step - sum(parts.values())
            parts['step'] = step
            (self.prototype_steps if self.rows_flag['on'] else self.steps).append(parts)
        self.index += 1
        in_measure = self.warmup <= self.index < self.warmup + self.iters
        self.rows_flag['on'] = in_measure and (self.index - self.warmup) % 2 == 1
        if self.index == self.warmup + self.iters:
            from torch.profiler import ProfilerActivity, profile

            self.sec.emit_ranges = True
            self.profiler = profile(activities=[ProfilerActivity.CPU])
            self.profiler.__enter__()
        self.prev = now
        self.sec.reset()

    def stop(self) -> None:
        if self.profiler is not None:
            self.profiler.__exit__(None, None, None)
            self.sec.emit_ranges = False


def make_hook(sec: Sections, recorder: StepRecorder):
    from mmengine.hooks import Hook

    class InstrumentHook(Hook):
        priority = 'LOWEST'

        def before_train(self, runner) -> None:
            instrument(runner, sec, recorder, recorder.rows_flag)

        def after_train(self, runner) -> None:
            recorder.stop()

    return InstrumentHook()


def summarise(steps: list[dict[str, float]]) -> dict:
    """Per component: median / q1 / q3 ms and share of the mean step; the not-model share."""
    names = sorted({k for s in steps for k in s} - {'step'})
    mean_step = statistics.mean(s['step'] for s in steps)
    comps = {}
    for n in names:
        vals = [s.get(n, 0.0) for s in steps]
        comps[n] = dict(
            summarize(vals),
            mean=statistics.mean(vals),
            share_of_mean_step=statistics.mean(vals) / mean_step,
        )
    not_model = [sum(s.get(n, 0.0) for n in NOT_MODEL) / s['step'] for s in steps]
    return dict(
        step=summarize([s['step'] for s in steps]),
        components=comps,
        not_model_share=summarize(not_model),
        not_model_share_of_mean_step=sum(comps[n]['mean'] for n in NOT_MODEL if n in comps)
        / mean_step,
    )


def profile_crosscheck(prof, names: set[str], n_steps: int) -> dict:
    """Forward/backward ms per step and component from the profiler trace."""
    split = attribute_profile(prof.events(), names)
    out = {}
    for phase, per in split.items():
        for name, us in per.items():
            out.setdefault(name, {})[phase] = us / 1e3 / n_steps
    return out


def main(argv: list[str] | None = None) -> None:
    """Paper-scale mode when ``--config`` names another config than the demo, else the demo
    breakdown."""
    argv = sys.argv[1:] if argv is None else list(argv)
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument('--config')
    known, _ = pre.parse_known_args(argv)
    if known.config and Path(known.config).resolve() != CONFIG:
        from benchmarks.paper_scale import main as paper_main

        paper_main(argv)
        return
    demo_main(argv)


def demo_main(argv: list[str]) -> None:
    """The demo breakdown (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--config', default=str(CONFIG), help='the demo config (this mode)')
    parser.add_argument(
        '--device',
        default='cpu',
        choices=('cpu', 'cuda'),
        help='cuda: train on the GPU and synchronise at every section boundary, so that each '
        'section holds its device time (the step is slower than unsynchronised)',
    )
    parser.add_argument(
        '--iters',
        type=int,
        default=100,
        help='measured iterations (even: current code, odd: prototype)',
    )
    parser.add_argument('--warmup', type=int, default=10)
    parser.add_argument('--profile-iters', type=int, default=4)
    args = parser.parse_args(argv)
    args.profile_iters = max(1, args.profile_iters)
    if args.device == 'cuda' and not torch.cuda.is_available():
        parser.error('--device cuda: CUDA is not available')
    if args.device == 'cpu':  # the runner trains on a GPU whenever it sees one
        os.environ['CUDA_VISIBLE_DEVICES'] = ''
    setup_single_thread()
    os.chdir(ROOT)  # the config's data_root is relative to the repository
    sec = Sections(sync=torch.cuda.synchronize if args.device == 'cuda' else None)
    recorder = StepRecorder(sec, args.warmup, args.iters)
    with tempfile.TemporaryDirectory() as work_dir:
        runner = build_runner(args, work_dir)
        runner.register_hook(make_hook(sec, recorder), priority='LOWEST')
        runner.train()
    summary = summarise(recorder.steps)
    proto = summarise(recorder.prototype_steps)
    comparison = prototype_comparison(summary, proto)
    names = set(summary['components']) | {'backward', 'data loading', 'model glue'}
    check = profile_crosscheck(recorder.profiler, names, args.profile_iters)
    batch = runner.cfg.train_dataloader.batch_size
    mean_step = statistics.mean(st['step'] for st in recorder.steps)
    fake_bwd = check.get('fake inputs', {}).get('backward', 0.0) / 1e3
    summary['not_model_share_incl_fake_backward_estimate'] = (
        summary['not_model_share_of_mean_step'] + fake_bwd / mean_step
    )
    path = write_results(
        'train_step' if args.device == 'cpu' else 'train_step_cuda',
        dict(
            command='python benchmarks/bench_train_step.py ' + ' '.join(sys.argv[1:]),
            config=str(CONFIG.relative_to(ROOT)),
            device=args.device,
            gpu=torch.cuda.get_device_name() if args.device == 'cuda' else None,
            batch_size=batch,
            iters=args.iters,
            warmup=args.warmup,
            not_model=list(NOT_MODEL),
            goal=GOAL,
            goal_met=summary['not_model_share']['median'] <= GOAL,
            **summary,
            profiler_crosscheck_ms_per_step=check,
            profiler_iters=args.profile_iters,
            prototype_decoder_rows=dict(summary=proto, comparison=comparison),
        ),
    )
    print_table(summary, check, batch)
    print(f'device: {args.device} (sections synchronised: {args.device == "cuda"})')
    print(
        f'not-model share of the mean step: {100 * summary["not_model_share_of_mean_step"]:.1f} %'
        f"; with the fake inputs' backward (profiler estimate) "
        f'{100 * summary["not_model_share_incl_fake_backward_estimate"]:.1f} %'
    )
    other = {k: v for k, v in check.items() if k not in summary['components']}
    print(
        'profiler, sections not in the table (ms/step): '
        + '; '.join(
            f'{k}: fwd {v.get("forward", 0):.1f}, bwd {v.get("backward", 0):.1f}'
            for k, v in sorted(other.items())
        )
    )
    print(
        'decoders on rows with queries (prototype, interleaved steps): '
        + ', '.join(
            f'{k} {v["current_ms"]:.1f} -> {v["prototype_ms"]:.1f} ms'
            for k, v in comparison.items()
        )
    )
    print(f'wrote {path}')


def prototype_comparison(current: dict, proto: dict) -> dict:
    """Median step, decoder forward and decoder-side backward: current code vs prototype."""

    def dec(summary, key):
        comps = summary['components']
        if key == 'decoder forwards (sum of means)':
            return sum(c['mean'] for n, c in comps.items() if n.startswith('decoder: '))
        return comps[key]['median'] if key in comps else summary[key]['median']

    keys = ('step', 'decoder forwards (sum of means)', BACKWARD_PARTS[0])
    return {
        k: dict(current_ms=dec(current, k) * 1e3, prototype_ms=dec(proto, k) * 1e3) for k in keys
    }


def print_table(summary: dict, check: dict, batch: int) -> None:
    comps = summary['components']
    rows = []
    for name, c in sorted(comps.items(), key=lambda kv: -kv[1]['mean']):
        pc = check.get(name, {})
        rows.append(
            [
                name,
                'not model' if name in NOT_MODEL else 'model',
                f'{c["median"] * 1e3:.2f}',
                f'{c["q1"] * 1e3:.2f}-{c["q3"] * 1e3:.2f}',
                f'{100 * c["share_of_mean_step"]:.1f}',
                f'{pc.get("forward", 0):.1f} / {pc.get("backward", 0):.1f}' if pc else '',
            ]
        )
    print(
        format_table(
            [
                'component',
                'kind',
                'median ms',
                'q1-q3 ms',
                '% of mean step',
                'profiler fwd / bwd ms',
            ],
            rows,
        )
    )
    st, nm = summary['step'], summary['not_model_share']
    print(
        f'step: median {st["median"] * 1e3:.1f} ms (q1 {st["q1"] * 1e3:.1f}, q3 '
        f'{st["q3"] * 1e3:.1f}), batch {batch}; not-model share per step: median '
        f'{100 * nm["median"]:.1f} % (q1 {100 * nm["q1"]:.1f}, q3 {100 * nm["q3"]:.1f}); '
        f'goal <= {100 * GOAL:.0f} %: {"met" if nm["median"] <= GOAL else "MISSED"}'
    )


if __name__ == '__main__':
    main()
