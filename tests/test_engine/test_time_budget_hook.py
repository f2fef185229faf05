# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""TimeBudgetHook: past the budget, the next iteration is the last one and it is checkpointed."""

import pytest
import torch
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


def _train(tmp_path, budget: float, max_iters: int = 6) -> tuple[Runner, TimeBudgetHook]:
    hook = TimeBudgetHook(max_seconds=budget)
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
        custom_hooks=[hook],
        experiment_name=f'budget_{tmp_path.name}',
    )
    runner.train()
    return runner, hook


def test_budget_exceeded_ends_after_one_more_iteration_and_saves(tmp_path):
    runner, hook = _train(tmp_path, budget=0.0)
    assert hook.stopped_at == 1 and runner.iter == 1
    assert (tmp_path / 'iter_1.pth').is_file() and not (tmp_path / 'iter_6.pth').exists()
    assert (tmp_path / 'last_checkpoint').read_text().strip().endswith('iter_1.pth')


def test_budget_not_reached_changes_nothing(tmp_path):
    runner, hook = _train(tmp_path, budget=3600.0)
    assert hook.stopped_at is None and runner.iter == 6
    assert (tmp_path / 'iter_6.pth').is_file() and not (tmp_path / 'iter_1.pth').exists()


def test_negative_budget_is_refused():
    with pytest.raises(ValueError, match='max_seconds'):
        TimeBudgetHook(max_seconds=-1)
