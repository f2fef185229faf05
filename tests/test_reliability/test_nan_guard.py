# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""NaN/Inf guard: a non-finite step is skipped (weights and optimizer state untouched), counted
and logged; training continues, or stops after ``max_consecutive`` with ``action='stop'``."""

from __future__ import annotations

import copy
import multiprocessing as mp
import queue as queue_mod
import time
from datetime import timedelta

import pytest
import torch
from mmengine.hooks import Hook
from mmengine.logging import MessageHub
from mmengine.model import BaseModel
from mmengine.runner import Runner
from torch import nn
from torch.utils.data import Dataset

from mmrefvlm.engine import NaNGuardOptimWrapper, NonFiniteLossError
from mmrefvlm.registry import OPTIM_WRAPPERS

BATCH, LR = 4, 0.05


class NaNAtModel(BaseModel):
    """Linear regression whose loss is made non-finite on chosen (0-based) forward calls.

    ``kind='loss'``: the loss itself is NaN. ``kind='grad'``: the loss is finite (0) but its
    gradient is NaN (``sqrt`` at 0).
    """

    def __init__(self, bad: set[int] = frozenset(), kind: str = 'loss') -> None:
        super().__init__()
        self.linear = nn.Linear(2, 1)
        self.bad, self.kind, self.calls = set(bad), kind, 0

    def forward(self, inputs, data_samples=None, mode='tensor'):
        pred = self.linear(torch.stack(inputs))
        if mode != 'loss':
            return pred
        loss = ((pred - torch.stack(data_samples)) ** 2).mean()
        if self.calls in self.bad:
            loss = (
                loss * float('nan')
                if self.kind == 'loss'
                else torch.sqrt(self.linear.weight.sum() * 0.0)
            )
        self.calls += 1
        return dict(loss=loss)


class ToyData(Dataset):
    def __init__(self) -> None:
        g = torch.Generator().manual_seed(0)
        self.x = torch.randn(16, 2, generator=g)
        self.y = self.x.sum(1, keepdim=True)

    def __len__(self) -> int:
        return 16

    def __getitem__(self, i):
        return dict(inputs=self.x[i], data_samples=self.y[i])


class RecordWeights(Hook):
    def __init__(self) -> None:
        self.weights = []

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        self.weights.append(runner.model.linear.weight.detach().clone())


def _runner(tmp_path, model, iters, **guard):
    rec = RecordWeights()
    runner = Runner(
        model=model,
        work_dir=str(tmp_path),
        train_dataloader=dict(
            dataset=ToyData(),
            batch_size=BATCH,
            num_workers=0,
            sampler=dict(type='InfiniteSampler', shuffle=False),
            collate_fn=dict(type='pseudo_collate'),
        ),
        optim_wrapper=dict(type=NaNGuardOptimWrapper, optimizer=dict(type='AdamW', lr=LR), **guard),
        train_cfg=dict(by_epoch=False, max_iters=iters),
        default_hooks=dict(logger=dict(type='LoggerHook', interval=1), checkpoint=None),
        custom_hooks=[rec],
        randomness=dict(seed=0),
        default_scope='mmrefvlm',
        experiment_name=f'nan_guard_{tmp_path.name}',
    )
    return runner, rec


def _reference(init: nn.Module, iters: int, bad: set[int]) -> torch.Tensor:
    """Plain AdamW over the same batches, leaving out the bad iterations."""
    model = copy.deepcopy(init).cpu()  # the Runner may have put ``init`` on CUDA; data is CPU
    opt = torch.optim.AdamW(model.parameters(), lr=LR)
    data = ToyData()
    for it in range(iters):
        if it in bad:
            continue
        idx = [(it * BATCH + j) % len(data) for j in range(BATCH)]
        loss = ((model(data.x[idx]) - data.y[idx]) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.weight.detach()


@pytest.mark.parametrize('kind', ['loss', 'grad'])
def test_nonfinite_steps_are_skipped_and_counted(tmp_path, kind):
    bad = {2, 5}
    model = NaNAtModel(bad, kind)
    runner, rec = _runner(tmp_path, model, 8)
    init = copy.deepcopy(runner.model.linear)
    runner.train()
    ow = runner.optim_wrapper
    assert ow.num_skipped == 2 and ow.num_consecutive == 0
    w = [init.weight.detach()] + rec.weights
    for it in range(8):
        changed = not torch.equal(w[it + 1], w[it])
        assert changed == (it not in bad), it
    assert all(torch.isfinite(x).all() for x in w)
    # identical to AdamW that never saw the bad batches; the optimizer counted 6 steps only
    # (exact on the CPU; on CUDA the same arithmetic in another kernel order, to float rounding)
    final, ref = runner.model.linear.weight.detach().cpu(), _reference(init, 8, bad)
    if final.device == init.weight.device:
        assert torch.equal(final, ref)
    else:
        torch.testing.assert_close(final, ref, rtol=1e-5, atol=1e-6)
    state = ow.optimizer.state[runner.model.linear.weight]
    assert int(state['step']) == 6
    hub = MessageHub.get_current_instance()
    assert hub.get_scalar('train/nonfinite_skips').current() == 2
    log = next(tmp_path.glob('*/*.log')).read_text()
    assert log.count('NaNGuard: non-finite loss or gradient') == 2
    assert 'iteration 3 ' in log and 'iteration 6 ' in log  # 1-based, as the logger counts
    # counters travel with the optimizer state (checkpoints, resume)
    sd = ow.state_dict()
    fresh = OPTIM_WRAPPERS.build(
        dict(
            type='NaNGuardOptimWrapper',
            optimizer=torch.optim.AdamW(runner.model.parameters(), lr=LR),
        )
    )
    fresh.load_state_dict(sd)
    assert fresh.num_skipped == 2


def test_stop_after_max_consecutive(tmp_path):
    runner, _ = _runner(tmp_path / 'a', NaNAtModel({2, 4}), 8, action='stop', max_consecutive=2)
    runner.train()  # two isolated bad steps: skipped, no stop
    assert runner.optim_wrapper.num_skipped == 2
    runner, rec = _runner(
        tmp_path / 'b', NaNAtModel({2, 3, 4}), 8, action='stop', max_consecutive=2
    )
    with pytest.raises(NonFiniteLossError, match='max_consecutive=2'):
        runner.train()
    assert len(rec.weights) == 3  # raised inside iteration 4 (index 3), after 2 in a row
    assert torch.equal(rec.weights[-1], rec.weights[-2])  # iteration 3 was skipped
    with pytest.raises(ValueError, match='action'):
        NaNGuardOptimWrapper(torch.optim.SGD(nn.Linear(1, 1).parameters(), lr=1.0), action='ignore')


def test_gradient_accumulation_skips_the_whole_update():
    torch.manual_seed(0)
    lin = nn.Linear(2, 1)
    ow = NaNGuardOptimWrapper(torch.optim.SGD(lin.parameters(), lr=0.1), accumulative_counts=2)
    x = torch.ones(3, 2)
    w0 = lin.weight.detach().clone()
    ow.update_params(lin(x).sum() * float('nan'))  # micro-batch 1 of update 1: NaN
    ow.update_params(lin(x).sum())  # micro-batch 2: finite, update still skipped
    assert torch.equal(lin.weight, w0) and ow.num_skipped == 1 and lin.weight.grad is None
    ow.update_params(lin(x).sum())
    ow.update_params(lin(x).sum())  # update 2: both finite -> a real step
    expected = w0 - 0.1 * (x.sum(0, keepdim=True) / 2 * 2)  # mean of 2 scaled micro-grads, x2
    assert torch.allclose(lin.weight, expected) and ow.num_skipped == 1


def _ddp_worker(rank: int, store: str, queue) -> None:
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel as DDP

    try:
        dist.init_process_group(
            'gloo',
            init_method=f'file://{store}',  # no TCP port another run could take or share
            rank=rank,
            world_size=2,
            timeout=timedelta(seconds=240),
        )
        torch.manual_seed(0)
        model = DDP(nn.Linear(2, 1))
        # check_grads=False: the decision rests on the losses alone, so rank 1 (finite loss, but
        # NaN gradients after DDP's all-reduce) only skips because the flag is all-reduced too
        ow = NaNGuardOptimWrapper(torch.optim.SGD(model.parameters(), lr=0.1), check_grads=False)
        weights = [model.module.weight.detach().clone()]
        for step in range(3):
            x = torch.full((4, 2), float(rank + step + 1))
            loss = model(x).pow(2).mean()
            if rank == 0 and step == 1:
                loss = loss * float('inf')  # only rank 0 goes non-finite
            ow.update_params(loss)
            weights.append(model.module.weight.detach().clone())
        _report(queue, (rank, ow.num_skipped, [w.tolist() for w in weights]))  # plain data
        dist.destroy_process_group()
    except Exception as err:  # noqa: BLE001 (report to the parent instead of hanging it)
        _report(queue, (rank, repr(err), None))


def _report(queue, item) -> None:
    """Put and flush before anything else can block the process. A loaded CI run once timed out
    waiting for rank 0's report after rank 1 had reported and exited; an item still in the
    queue's feeder thread while the process blocks in gloo's teardown would look like that (not
    proven; the flush rules it out)."""
    queue.put(item)
    queue.close()
    queue.join_thread()


def _collect(queue, procs, timeout: float) -> dict:
    """One result per process, failing early when a process dies without reporting."""
    results, deadline = {}, time.monotonic() + timeout
    while len(results) < len(procs):
        try:
            rank, n, w = queue.get(timeout=1.0)
            results[rank] = (n, w and [torch.tensor(x) for x in w])
            continue
        except queue_mod.Empty:
            pass
        dead = [p.exitcode for p in procs if p.exitcode not in (None, 0)]
        if dead:
            pytest.fail(f'a DDP worker died without reporting (exit codes {dead})')
        if time.monotonic() > deadline:
            pytest.fail(f'DDP workers did not report within {timeout} s')
    return results


def test_ddp_ranks_decide_together(tmp_path):
    # spawn, not fork: forking a process whose autograd (or CUDA) threads already started is
    # unsafe ("Unable to handle autograd's threading in combination with fork-based
    # multiprocessing"). The work is 3 tiny steps; the time goes to the children's imports, so the
    # deadline leaves a wide margin for a loaded machine.
    ctx = mp.get_context('spawn')
    queue, store = ctx.Queue(), str(tmp_path / 'rendezvous')
    procs = [ctx.Process(target=_ddp_worker, args=(r, store, queue)) for r in (0, 1)]
    for p in procs:
        p.start()
    try:
        results = _collect(queue, procs, timeout=300)
    finally:
        for p in procs:
            p.join(timeout=30)
            if p.is_alive():
                p.kill()
    for rank in (0, 1):
        assert results[rank][0] == 1, results[rank][0]  # both skipped, though rank 1 was finite
        w = results[rank][1]
        assert not torch.equal(w[1], w[0]) and torch.equal(w[2], w[1])
        assert not torch.equal(w[3], w[2]) and all(torch.isfinite(x).all() for x in w)
    assert all(torch.equal(a, b) for a, b in zip(results[0][1], results[1][1], strict=True))
