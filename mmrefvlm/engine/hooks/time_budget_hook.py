# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""Keep an iteration-based training run inside a wall-clock budget."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from mmengine.hooks import Hook
from mmengine.logging import print_log

from mmrefvlm.registry import HOOKS


@HOOKS.register_module()
class TimeBudgetHook(Hook):
    """Fit training into ``max_seconds``: shorten the schedule once, stop cleanly if still late.

    1. With ``fit_schedule``, after iteration ``calibrate[1]`` the hook measures the time per
       iteration over iterations ``calibrate[0]..calibrate[1]`` and, when the remaining budget
       (times ``safety``) holds fewer iterations than ``max_iters``, moves ``max_iters`` to what
       fits and compresses every parameter scheduler that has not started yet (typically the cosine
       decay after the warm-up) onto the new end, so the learning rate still decays to its floor.
       Schedulers already running are left as configured.
    2. Before each iteration past the budget, ``max_iters`` becomes ``iter + 1``: the iteration
       runs, the ``CheckpointHook`` saves it as the last checkpoint (``last_checkpoint`` is
       updated), validation at the end of training runs as usual, and the loop ends.

    A run that fits its budget is not changed. Meant for demos and benchmarks with a hard limit.

    Args:
        max_seconds (float): Training wall-clock budget in seconds, counted from ``before_train``
            (after the model, data and optimizer are built).
        fit_schedule (bool): Do step 1. Default False.
        calibrate (Sequence[int]): 1-based iterations between which the step time is measured.
            Default (10, 40): after start-up effects (first CUDA kernels, data workers).
        safety (float): Fraction of the remaining budget planned for. Default 0.95.
    """

    priority = 'VERY_HIGH'

    def __init__(
        self,
        max_seconds: float,
        *,
        fit_schedule: bool = False,
        calibrate: Sequence[int] = (10, 40),
        safety: float = 0.95,
    ) -> None:
        if not max_seconds >= 0:
            raise ValueError(f'max_seconds must be >= 0, got {max_seconds!r}')
        if len(calibrate) != 2 or not 0 <= calibrate[0] < calibrate[1]:
            raise ValueError(f'calibrate must be two iterations (a, b), 0 <= a < b: {calibrate!r}')
        if not 0 < safety <= 1:
            raise ValueError(f'safety must be in (0, 1], got {safety!r}')
        self.max_seconds = float(max_seconds)
        self.fit_schedule = fit_schedule
        self.calibrate = (int(calibrate[0]), int(calibrate[1]))
        self.safety = safety
        self.clock: Callable[[], float] = time.monotonic  # replaceable in tests
        self._start: float | None = None
        self._t_cal: float | None = None
        self.fitted_max_iters: int | None = None
        self.stopped_at: int | None = None

    def before_train(self, runner) -> None:  # noqa: D102
        self._start = self._t_cal = self.clock()

    def before_train_iter(self, runner, batch_idx: int, data_batch=None) -> None:  # noqa: D102
        if self._start is None or self.stopped_at is not None:
            return
        elapsed = self.clock() - self._start
        if elapsed > self.max_seconds and runner.iter + 1 < runner.max_iters:
            self.stopped_at = runner.iter + 1
            runner.train_loop._max_iters = self.stopped_at  # read by the loop and the hooks
            print_log(
                f'TimeBudgetHook: {elapsed:.0f} s > {self.max_seconds:.0f} s; iteration '
                f'{self.stopped_at} is the last (checkpointed) one',
                logger='current',
                level=30,
            )

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:  # noqa: D102
        if not self.fit_schedule or self._start is None or self.fitted_max_iters is not None:
            return
        done = runner.iter + 1
        if done == self.calibrate[0]:
            self._t_cal = self.clock()
        elif done == self.calibrate[1] and self._t_cal is not None:
            now = self.clock()
            per_iter = (now - self._t_cal) / (self.calibrate[1] - self.calibrate[0])
            remaining = self.max_seconds - (now - self._start)
            fits = done + max(1, int(self.safety * remaining / max(per_iter, 1e-9)))
            self.fitted_max_iters = min(fits, runner.max_iters)
            if fits < runner.max_iters:
                self._shrink(runner, done, fits, per_iter)

    def _shrink(self, runner, done: int, new_max: int, per_iter: float) -> None:
        """Move ``max_iters`` to ``new_max`` and map the not-yet-started schedulers' iterations
        ``x >= done`` to ``done + (x - done) * f`` (``f``: the ratio of the remaining lengths)."""
        old_max = runner.max_iters
        f = (new_max - done) / (old_max - done)

        def remap(x: int) -> int:
            return new_max if x >= old_max else done + round((x - done) * f)

        runner.train_loop._max_iters = new_max
        schedulers = runner.param_schedulers
        if isinstance(schedulers, dict):
            schedulers = [s for group in schedulers.values() for s in group]
        for sched in schedulers or []:
            if sched.begin < done:  # running or finished: left as configured
                continue
            sched.begin, sched.end = (
                remap(sched.begin),
                max(remap(sched.end), remap(sched.begin) + 1),
            )
            if hasattr(sched, 'T_max'):
                sched.T_max = sched.end - sched.begin
        print_log(
            f'TimeBudgetHook: {per_iter * 1e3:.0f} ms per iteration; {old_max} iterations do not '
            f'fit in {self.max_seconds:.0f} s, training ends at {new_max} (schedule compressed)',
            logger='current',
            level=30,
        )
