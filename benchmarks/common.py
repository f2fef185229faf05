# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""Shared helpers for the benchmark scripts: timing, peak CPU memory, machine info, JSON output.

Every benchmark compares an implementation with a baseline written in the same script, in the same
process and on the same inputs, and reports ratios of medians; absolute times depend on the machine
(see :func:`machine_info`) and on how busy it is.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

RESULTS_DIR = Path(__file__).resolve().parent / 'results'


def setup_single_thread() -> None:
    """One intra-op thread, as the benchmark protocol requires (the machine is shared)."""
    torch.set_num_threads(1)


def time_fn(
    fn: Callable[[], Any], *, repeats: int = 15, warmup: int = 3, inner: int = 1
) -> list[float]:
    """Wall-clock seconds per call of ``fn``.

    Args:
        fn: The callable to time (no arguments).
        repeats: Number of measured samples.
        warmup: Untimed calls before measuring.
        inner: Calls per sample (the sample is their mean), for sub-millisecond functions.

    Returns:
        list[float]: ``repeats`` samples, seconds per call.
    """
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(inner):
            fn()
        samples.append((time.perf_counter() - start) / inner)
    return samples


def summarize(samples: Sequence[float]) -> dict[str, float]:
    """Median, min, max and inter-quartile range of timing samples (seconds)."""
    ordered = sorted(samples)
    quartiles = statistics.quantiles(ordered, n=4) if len(ordered) > 1 else [ordered[0]] * 3
    return dict(
        median=statistics.median(ordered),
        min=ordered[0],
        max=ordered[-1],
        q1=quartiles[0],
        q3=quartiles[2],
        n=len(ordered),
    )


def ratio_summary(baseline: Sequence[float], ours: Sequence[float]) -> dict[str, float]:
    """Speed-up ``baseline / ours``: ratio of medians, plus a conservative and an optimistic bound.

    ``low`` compares the baseline's first quartile with our third quartile (and ``high`` the
    reverse), so the interval reflects the spread of both measurements.
    """
    b, o = summarize(baseline), summarize(ours)
    return dict(median=b['median'] / o['median'], low=b['q1'] / o['q3'], high=b['q3'] / o['q1'])


def peak_cpu_memory(fn: Callable[[], Any]) -> int:
    """Peak bytes of CPU tensor memory allocated while ``fn`` runs, beyond what existed before.

    Method: run ``fn`` once under ``torch.profiler`` with ``profile_memory=True`` and replay the
    allocator's create/destroy events in time order (the profiler's memory timeline), keeping the
    running maximum of live bytes. Tensors that existed before the call (inputs, cached constants)
    do not count; the returned output does, while it is alive inside ``fn``. This uses the private
    ``torch.profiler._memory_profiler`` timeline, so :func:`check_peak_memory_method` validates it
    on a known allocation pattern before any measurement.
    """
    from torch.profiler import ProfilerActivity, profile
    from torch.profiler._memory_profiler import Action

    with profile(
        activities=[ProfilerActivity.CPU], profile_memory=True, record_shapes=True, with_stack=True
    ) as prof:
        fn()
    live = peak = 0
    for _, action, (key, _), size in sorted(prof._memory_profile().timeline, key=lambda r: r[0]):
        if key.device.type != 'cpu':
            continue
        if action == Action.CREATE:
            live += size
        elif action == Action.DESTROY:
            live -= size
        peak = max(peak, live)
    return peak


def check_peak_memory_method() -> None:
    """Fail loudly if :func:`peak_cpu_memory` does not measure a known pattern within 1 %."""
    base = torch.ones(1000, 1000)

    def pattern() -> torch.Tensor:
        a = torch.empty(1_000_000)  # 4 MB
        b = torch.empty(2_000_000)  # 8 MB  -> 12 MB live
        del a  #       ->  8 MB
        c = (base * 2).sum()  # 4 MB temporary -> 12 MB again, then 8 MB
        return b[:1] + c

    peak = peak_cpu_memory(pattern)
    if abs(peak - 12_000_000) > 120_000:
        raise RuntimeError(f'peak_cpu_memory self-check failed: expected ~12 MB, got {peak} B')


def machine_info() -> dict[str, Any]:
    """nproc, CPU model, torch version, thread settings and load average of this run."""
    cpu_model = platform.processor() or 'unknown'
    try:
        for line in Path('/proc/cpuinfo').read_text().splitlines():
            if line.startswith('model name'):
                cpu_model = line.split(':', 1)[1].strip()
                break
    except OSError:
        pass
    try:  # the machine is shared: the load at write time says how noisy the timings are
        load = Path('/proc/loadavg').read_text().split()[:3]
    except OSError:
        load = []
    return dict(
        nproc=os.cpu_count(),
        cpu_model=cpu_model,
        torch=torch.__version__,
        python=platform.python_version(),
        OMP_NUM_THREADS=os.environ.get('OMP_NUM_THREADS', '(unset)'),
        torch_num_threads=torch.get_num_threads(),
        loadavg_1_5_15min=load,
    )


def write_results(name: str, payload: dict[str, Any]) -> Path:
    """Write ``payload`` (plus machine info) to ``benchmarks/results/<name>.json`` atomically."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f'{name}.json'
    tmp = path.with_suffix('.json.tmp')
    tmp.write_text(json.dumps(dict(machine=machine_info(), **payload), indent=2) + '\n')
    tmp.replace(path)
    return path


def format_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A plain-text table (also valid Markdown)."""
    cells = [[str(h) for h in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = [
        '| ' + ' | '.join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + ' |'
        for row in cells
    ]
    lines.insert(1, '|' + '|'.join('-' * (w + 2) for w in widths) + '|')
    return '\n'.join(lines)


class CudaPhasePeaks:
    """Peak allocated CUDA memory of the forward, backward and optimizer-step phases of the
    wrapper's ``update_params`` (instance attributes wrapped; nothing on CPU)."""

    def __init__(self, ow, device: torch.device) -> None:
        self.enabled = device.type == 'cuda'
        self.peaks: dict[str, int] = {}
        if not self.enabled:
            return
        for phase, attr in (('backward', 'backward'), ('optimizer step', 'step')):
            self._wrap(ow, attr, phase)

    def _wrap(self, ow, attr: str, phase: str) -> None:
        fn = getattr(ow, attr)

        def wrapped(*args, **kwargs):
            before = 'forward' if phase == 'backward' else 'between'
            self._close(before)
            try:
                return fn(*args, **kwargs)
            finally:
                self._close(phase)

        setattr(ow, attr, wrapped)

    def _close(self, phase: str) -> None:
        peak = torch.cuda.max_memory_allocated()
        self.peaks[phase] = max(self.peaks.get(phase, 0), peak)
        torch.cuda.reset_peak_memory_stats()

    def reset(self) -> None:
        """Forget the peaks (before the timed steps)."""
        self.peaks = {}
        if self.enabled:
            torch.cuda.reset_peak_memory_stats()

    def overall(self) -> int | None:
        """The peak over every phase (None on CPU)."""
        if not self.enabled:
            return None
        self._close('between')
        return max(self.peaks.values())
