# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""TimeBudgetHook: past the budget, the next iteration is the last one and it is checkpointed."""

import pytest
import torch
from mmengine.hooks import Hook
from mmengine.model import BaseModel
from mmengine.runner import Runner
from torch import nn
from torch.utils.data import Dataset

from mmrefvlm.engine import TimeBudgetHook


class Toy(BaseModel):
    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(2, 1)

    def forward(self, inputs, data_samples=None, mode='tensor'):
        pred = self.linear(torch.stack(inputs))
        return dict(loss=pred.pow(2).mean()) if mode == 'loss' else pred


class Data(Dataset):
    def __len__(self) -> int:
        return 8

    def __getitem__(self, i):
        return dict(inputs=torch.full((2,), float(i)))


class FakeClock(Hook):
    """A clock for the budget hook that advances one second per iteration (runs first)."""

    priority = 'HIGHEST'

    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
        self.t += 1.0


def _train(
    tmp_path, budget: float, max_iters: int = 6, schedule=None, **kwargs
) -> tuple[Runner, TimeBudgetHook]:
    hook = TimeBudgetHook(max_seconds=budget, **kwargs)
    clock = FakeClock()
    hook.clock = clock
    runner = Runner(
        model=Toy(),
        work_dir=str(tmp_path),
        train_dataloader=dict(
            dataset=Data(),
            batch_size=2,
            num_workers=0,
            sampler=dict(type='InfiniteSampler', shuffle=False),
            collate_fn=dict(type='pseudo_collate'),
        ),
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.1)),
        train_cfg=dict(by_epoch=False, max_iters=max_iters),
        default_hooks=dict(checkpoint=dict(type='CheckpointHook', interval=100, by_epoch=False)),
        custom_hooks=[hook, clock],
        param_scheduler=schedule,
        default_scope='mmrefvlm',  # not mmengine's: later tests build mmrefvlm types by name
        experiment_name=f'budget_{tmp_path.name}',
    )
    runner.train()
    return runner, hook


def test_budget_exceeded_ends_after_one_more_iteration_and_saves(tmp_path):
    runner, hook = _train(tmp_path, budget=1.5)  # 1 s per iteration: 2 s > 1.5 s before it. 3
    assert hook.stopped_at == 3 and runner.iter == 3
    assert (tmp_path / 'iter_3.pth').is_file() and not (tmp_path / 'iter_6.pth').exists()
    assert (tmp_path / 'last_checkpoint').read_text().strip().endswith('iter_3.pth')


def test_budget_not_reached_changes_nothing(tmp_path):
    runner, hook = _train(tmp_path, budget=3600.0)
    assert hook.stopped_at is None and runner.iter == 6
    assert (tmp_path / 'iter_6.pth').is_file() and not (tmp_path / 'iter_1.pth').exists()


def test_fit_schedule_compresses_the_decay_onto_what_fits(tmp_path):
    schedule = [
        dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=4),
        dict(type='CosineAnnealingLR', by_epoch=False, begin=4, end=100, T_max=96, eta_min=1e-3),
    ]
    runner, hook = _train(
        tmp_path, 30.0, max_iters=100, schedule=schedule, fit_schedule=True, calibrate=(2, 4)
    )
    # 1 s per iteration, 26 s left after iteration 4, 95 % of it planned: 4 + 24 iterations
    assert hook.fitted_max_iters == 28 and hook.stopped_at is None and runner.iter == 28
    warmup, cosine = runner.param_schedulers
    assert (warmup.begin, warmup.end) == (0, 4)  # already running at calibration: unchanged
    assert (cosine.begin, cosine.end, cosine.T_max) == (4, 28, 24)
    # decayed to its floor (uncompressed, iteration 28 would still be at 94 % of the base lr 0.1)
    assert runner.optim_wrapper.get_lr()['lr'][0] < 2e-3
    assert (tmp_path / 'iter_28.pth').is_file()


def test_fit_schedule_leaves_a_run_that_fits(tmp_path):
    runner, hook = _train(tmp_path, 3600.0, max_iters=8, fit_schedule=True, calibrate=(2, 4))
    assert hook.fitted_max_iters == 8 and runner.iter == 8


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match='max_seconds'):
        TimeBudgetHook(max_seconds=-1)
    with pytest.raises(ValueError, match='calibrate'):
        TimeBudgetHook(max_seconds=1, calibrate=(5, 5))
    with pytest.raises(ValueError, match='safety'):
        TimeBudgetHook(max_seconds=1, safety=0)
