# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""End an iteration-based training run cleanly when it exceeds a wall-clock budget."""

from __future__ import annotations

import time

from mmengine.hooks import Hook
from mmengine.logging import print_log

from mmrefvlm.registry import HOOKS


@HOOKS.register_module()
class TimeBudgetHook(Hook):
    """Make the current iteration the last one once training has run ``max_seconds``.

    Before each iteration past the budget, the loop's ``max_iters`` becomes ``iter + 1``: the
    iteration runs, the ``CheckpointHook`` saves it as the last checkpoint (``last_checkpoint`` is
    updated), validation at the end of training runs as usual, and the loop ends. The learning-rate
    schedule is not rescaled. Meant for demos and benchmarks with a hard time limit; a normal run
    never reaches the budget.

    Args:
        max_seconds (float): Training wall-clock budget in seconds, counted from
            ``before_train`` (after the model, data and optimizer are built).
    """

    priority = 'VERY_HIGH'

    def __init__(self, max_seconds: float) -> None:
        if not max_seconds >= 0:
            raise ValueError(f'max_seconds must be >= 0, got {max_seconds!r}')
        self.max_seconds = float(max_seconds)
        self._start: float | None = None
        self.stopped_at: int | None = None

    def before_train(self, runner) -> None:  # noqa: D102
        self._start = time.monotonic()

    def before_train_iter(self, runner, batch_idx: int, data_batch=None) -> None:  # noqa: D102
        if self._start is None or self.stopped_at is not None:
            return
        elapsed = time.monotonic() - self._start
        if elapsed > self.max_seconds and runner.iter + 1 < runner.max_iters:
            self.stopped_at = runner.iter + 1
            runner.train_loop._max_iters = self.stopped_at  # read by the loop and the hooks
            print_log(
                f'TimeBudgetHook: {elapsed:.0f} s > {self.max_seconds:.0f} s; iteration '
                f'{self.stopped_at} is the last (checkpointed) one',
                logger='current',
                level=30,
            )
