# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""Operations the host dispatches per demo training step: what bounds the step on a fast GPU.

Run: ``python benchmarks/count_ops.py [--config CONFIG] [--steps 4]`` (~1 min; writes
``benchmarks/results/op_counts.json``).

Issue 13 asks for a demo step of at most 30 ms on one H200. A step that is small for the GPU is
bound by the host: every ATen operation costs the host dispatcher (and, for a tensor on a GPU, a
kernel launch) a few microseconds whatever its size. This counts, with a ``TorchDispatchMode``,
the ATen operations of one full training step of the config's model, by phase: the data
preprocessor, the loss forward, the backward, and the update (the losses' sum and log values, the
optimizer wrapper's non-finite check, gradient clipping, AdamW, ``zero_grad``). The update runs
with PyTorch's *foreach* kernels, as it does on a GPU (on the CPU PyTorch loops over the tensors
instead). Operations that only make a view or an empty tensor launch no kernel; the rest launch
at least one. The forward is also attributed to the innermost ``mmrefvlm`` function on the
Python stack.

It also times, on this machine, a tiny operation (so that the time is the framework's own cost,
not the arithmetic): the host's cost per operation, which no GPU removes; a CUDA launch adds to it.
And it times each phase of the step at batch sizes 1, 2, 4 and 8 (the first samples of the same
batches, interleaved) and fits ``time = fixed + per_sample * B``: the fixed part of the forward and
the backward is the work that does not grow with the batch, mostly the host's (Python, dispatch,
small tensors), which a faster GPU does not shorten. (The update's time on the CPU is AdamW's
arithmetic over the parameters, tensor by tensor; on a GPU it is a few foreach kernels.)
"""

from __future__ import annotations

import argparse
import collections
import statistics
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import torch
from torch.utils._python_dispatch import TorchDispatchMode

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.common import format_table, setup_single_thread, write_results  # noqa: E402

CONFIG = ROOT / 'configs' / 'refvlm' / 'demo_stage2.py'
PHASES = ('preprocess', 'forward', 'backward', 'update')
# Not flagged as views by their schemas, but launch no kernel either. ``_local_scalar_dense``
# (``.item()``) reads a value: a device->host copy on a GPU (count_syncs.py counts those), not a
# kernel; AdamW does it twice per parameter on its step counters, which stay on the host on a GPU.
NO_KERNEL = frozenset(
    {'aten._unsafe_view', 'aten.detach', 'aten.lift_fresh', 'aten.empty', 'aten.empty_like',
     'aten.empty_strided', 'aten.new_empty', 'aten.new_empty_strided', 'aten.alias',
     'aten._local_scalar_dense'}
)  # fmt: skip


def launches_kernel(func) -> bool:
    """False for an operation that only makes a view, an alias or an uninitialised tensor."""
    return not (getattr(func, 'is_view', False) or str(func.overloadpacket) in NO_KERNEL)


def caller(package: str = 'mmrefvlm') -> str:
    """``file:function`` of the innermost frame of ``package`` on the Python stack, or ``-``."""
    frame = sys._getframe(2)
    marker = f'/{package}/'
    while frame is not None:
        name = frame.f_code.co_filename
        if marker in name and '/benchmarks/' not in name:
            return f'{name.rsplit(marker, 1)[-1]}:{frame.f_code.co_name}'
        frame = frame.f_back
    return '-'


class OpCounter(TorchDispatchMode):
    """Counts the ATen operations dispatched inside it, under the current ``phase``.

    Args:
        attribute (Iterable[str]): Phases whose operations are also attributed to their caller
            (see :func:`caller`; walking the stack is slow).
    """

    def __init__(self, attribute=()) -> None:
        super().__init__()
        self.phase = 'other'
        self.attribute = set(attribute)
        self.ops: collections.Counter = collections.Counter()  # (phase, op name)
        self.kernels: collections.Counter = collections.Counter()  # phase
        self.by_caller: collections.Counter = collections.Counter()  # (phase, caller)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops[self.phase, str(func.overloadpacket)] += 1
        if launches_kernel(func):
            self.kernels[self.phase] += 1
        if self.phase in self.attribute:
            self.by_caller[self.phase, caller()] += 1
        return func(*args, **(kwargs or {}))

    def total(self, phase: str) -> int:
        """All operations of ``phase``."""
        return sum(n for (p, _), n in self.ops.items() if p == phase)


@contextmanager
def foreach_on_cpu():
    """Let CPU tensors take PyTorch's foreach paths (AdamW, gradient norms), as GPU tensors do."""
    import torch.optim.optimizer as optimizer_mod
    from torch.utils import _foreach_utils

    original = _foreach_utils._get_foreach_kernels_supported_devices

    def with_cpu() -> list[str]:
        return [*original(), 'cpu']

    _foreach_utils._get_foreach_kernels_supported_devices = with_cpu
    optimizer_mod._get_foreach_kernels_supported_devices = with_cpu  # imported by name there
    try:
        yield
    finally:
        _foreach_utils._get_foreach_kernels_supported_devices = original
        optimizer_mod._get_foreach_kernels_supported_devices = original


@contextmanager
def around_backward(optim_wrapper, before, after):
    """Call ``before()`` / ``after()`` around the wrapper's backward (inside ``update_params``),
    which marks where the update's phases begin and end; the wrapper's own method afterwards."""
    wrapper_backward = optim_wrapper.backward

    def backward(loss, **kwargs):
        before()
        wrapper_backward(loss, **kwargs)
        after()

    optim_wrapper.backward = backward
    try:
        yield
    finally:
        del optim_wrapper.backward  # the bound method again


def count_step(model, optim_wrapper, batch, attribute=('forward',)) -> OpCounter:
    """The operations of one training step (as ``BaseModel.train_step`` does it), by phase."""
    counter = OpCounter(attribute)

    def set_phase(name: str):
        return lambda: setattr(counter, 'phase', name)

    with around_backward(optim_wrapper, set_phase('backward'), set_phase('update')):
        with counter, foreach_on_cpu():
            counter.phase = 'preprocess'
            data = model.data_preprocessor(batch, training=True)
            counter.phase = 'forward'
            losses = model(**data, mode='loss')
            counter.phase = 'update'
            loss, _ = model.parse_losses(losses)
            optim_wrapper.update_params(loss)
    return counter


def take(batch: dict, n: int) -> dict:
    """The first ``n`` samples of a collated batch (a dict of per-sample lists)."""
    return {k: v[:n] if isinstance(v, (list, tuple)) else v for k, v in batch.items()}


def phase_times(model, optim_wrapper, batches, sizes=(1, 2, 4, 8), rounds: int = 3) -> dict:
    """Median ms per phase (preprocess + forward, backward, update) at each batch size, and the
    line ``fixed + per_sample * B`` fitted to each phase (least squares over the medians)."""
    import numpy as np

    times: dict = {}
    marks: list[float] = []

    def mark() -> None:
        marks.append(time.perf_counter())

    with around_backward(optim_wrapper, mark, mark):
        for _ in range(rounds):
            for n in sizes:
                for batch in batches:
                    marks.clear()
                    start = time.perf_counter()
                    data = model.data_preprocessor(take(batch, n), training=True)
                    loss, _ = model.parse_losses(model(**data, mode='loss'))
                    optim_wrapper.update_params(loss)
                    end = time.perf_counter()
                    row = (marks[0] - start, marks[1] - marks[0], end - marks[1])
                    times.setdefault(n, []).append(row)
    names = ('forward', 'backward', 'update')
    med = {
        n: {k: 1e3 * statistics.median(r[i] for r in rows) for i, k in enumerate(names)}
        for n, rows in times.items()
    }
    fit = {}
    for k in names:
        per_sample, fixed = np.polyfit(list(sizes), [med[n][k] for n in sizes], 1)
        fit[k] = dict(fixed_ms=float(fixed), per_sample_ms=float(per_sample))
    return dict(median_ms=med, fit=fit, rounds=rounds, batches=len(batches))


def host_cost_per_op(n: int = 20000, repeats: int = 5) -> dict:
    """Median µs per tiny operation on this host: without and with autograd recording."""
    out = {}
    for name, grad in (('no_grad', False), ('autograd', True)):
        a = torch.ones(1, requires_grad=grad)
        b = torch.ones(1)
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            for _ in range(n):
                torch.add(a, b)
            times.append((time.perf_counter() - start) / n * 1e6)
        out[name] = statistics.median(times)
    return out


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--config', default=str(CONFIG))
    parser.add_argument('--steps', type=int, default=4, help='counted steps (after one warm-up)')
    parser.add_argument('--top', type=int, default=12, help='callers listed')
    parser.add_argument('--time-rounds', type=int, default=3, help='0: no phase timing')
    parser.add_argument('--name', default='op_counts', help='results file name (without .json)')
    args = parser.parse_args(argv)
    from mmengine.optim import build_optim_wrapper

    from benchmarks.count_syncs import build
    from mmrefvlm.apis import load_config

    setup_single_thread()
    model, loader = build(args.config, 'cpu')
    optim_wrapper = build_optim_wrapper(model, load_config(args.config).optim_wrapper)
    steps, batches = [], []
    for i, batch in enumerate(loader):
        if i > args.steps:
            break
        counter = count_step(model, optim_wrapper, batch)
        if i:  # the first step creates the optimizer state
            steps.append(counter)
            batches.append(batch)
    timing = (
        phase_times(model, optim_wrapper, batches, rounds=args.time_rounds)
        if args.time_rounds
        else None
    )
    per_phase = {
        p: dict(
            ops=statistics.median(c.total(p) for c in steps),
            kernel_ops=statistics.median(c.kernels[p] for c in steps),
        )
        for p in PHASES
    }
    total = sum(v['ops'] for v in per_phase.values())
    kernels = sum(v['kernel_ops'] for v in per_phase.values())
    callers: collections.Counter = collections.Counter()
    op_names: collections.Counter = collections.Counter()
    for c in steps:
        callers.update({k: v / len(steps) for (p, k), v in c.by_caller.items()})
        op_names.update({f'{p} {k}': v / len(steps) for (p, k), v in c.ops.items()})
    cost = host_cost_per_op()
    trainable = sum(1 for p in model.parameters() if p.requires_grad)
    result = dict(
        command='python benchmarks/count_ops.py '
        + ' '.join(sys.argv[1:] if argv is None else argv),
        config=str(Path(args.config).resolve().relative_to(ROOT)),
        batch_size=loader.batch_size,
        counted_steps=len(steps),
        trainable_tensors=trainable,
        per_phase=per_phase,
        total_ops=total,
        total_kernel_ops=kernels,
        host_us_per_op=cost,
        host_floor_ms=dict(
            measured_autograd=total * cost['autograd'] / 1e3,
            **{f'at_{us}us_per_kernel_op': kernels * us / 1e3 for us in (2, 5, 10)},
        ),
        phase_times=timing,
        forward_by_caller=dict(callers.most_common(args.top)),
        top_ops=dict(op_names.most_common(args.top)),
    )
    path = write_results(args.name, result)
    rows = [[p, f'{v["ops"]:.0f}', f'{v["kernel_ops"]:.0f}'] for p, v in per_phase.items()]
    rows.append(['step', f'{total:.0f}', f'{kernels:.0f}'])
    print(format_table(['phase', 'ATen ops', 'of which launch a kernel'], rows))
    print(
        f'host cost per tiny op here: {cost["no_grad"]:.1f} us (no grad), '
        f'{cost["autograd"]:.1f} us (autograd); step floor at that cost: '
        f'{result["host_floor_ms"]["measured_autograd"]:.1f} ms; wrote {path}'
    )
    if timing:
        rows = [
            [n, *(f'{timing["median_ms"][n][k]:.1f}' for k in ('forward', 'backward', 'update'))]
            for n in sorted(timing['median_ms'])
        ]
        rows.append(['fixed', *(f'{f["fixed_ms"]:.1f}' for f in timing['fit'].values())])
        rows.append(['per sample', *(f'{f["per_sample_ms"]:.1f}' for f in timing['fit'].values())])
        print(format_table(['batch', 'forward ms', 'backward ms', 'update ms'], rows))
    return result


if __name__ == '__main__':
    main()
