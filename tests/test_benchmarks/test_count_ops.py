# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""``benchmarks/count_ops.py``: the per-phase operation counter on hand-counted cases."""

import torch
from mmengine.model import BaseModel
from torch import nn

from benchmarks import count_ops
from mmrefvlm.engine import NaNGuardOptimWrapper


class TwoLinears(BaseModel):
    def __init__(self, layers: int = 2) -> None:
        super().__init__()
        self.layers = nn.ModuleList(nn.Linear(4, 4) for _ in range(layers))

    def forward(self, inputs, data_samples=None, mode='loss'):
        x = inputs
        for layer in self.layers:
            x = layer(x)
        return dict(loss=x.square().mean())


def wrapper_for(model) -> NaNGuardOptimWrapper:
    return NaNGuardOptimWrapper(
        torch.optim.AdamW(model.parameters(), lr=0.1), clip_grad=dict(max_norm=1.0)
    )


def test_views_and_kernels_are_told_apart():
    x = torch.randn(3, 4)
    with count_ops.OpCounter() as counter:
        counter.phase = 'p'
        y = x.view(12)
        z = y + 1
        float(z[0])  # select (a view) and .item() (a read, no kernel)
    assert dict(counter.ops) == {
        ('p', 'aten.view'): 1,
        ('p', 'aten.add'): 1,
        ('p', 'aten.select'): 1,
        ('p', 'aten._local_scalar_dense'): 1,
    }
    assert counter.total('p') == 4 and counter.kernels['p'] == 1


def test_a_step_is_split_into_phases_and_really_taken():
    torch.manual_seed(0)
    model = TwoLinears()
    before = [p.detach().clone() for p in model.parameters()]
    wrapper = wrapper_for(model)
    counter = count_ops.count_step(model, wrapper, dict(inputs=torch.randn(5, 4)))
    # forward by hand: per Linear a transpose (view) and an addmm; then square and mean
    forward = {k: v for (p, k), v in counter.ops.items() if p == 'forward'}
    assert forward == {'aten.t': 2, 'aten.addmm': 2, 'aten.pow': 1, 'aten.mean': 1}
    assert counter.kernels['forward'] == 4
    assert counter.total('backward') > 0
    # the update: gradient norm and clipping, AdamW's moments, all with foreach kernels
    update = {k for (p, k), v in counter.ops.items() if p == 'update'}
    assert {'aten._foreach_norm', 'aten._foreach_mul_', 'aten._foreach_lerp_'} <= update, update
    assert all(not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
    assert 'backward' not in vars(wrapper)  # the wrapper's own method is back
    # the forward is attributed to its caller (this test is not under mmrefvlm/: '-')
    assert sum(n for (p, _), n in counter.by_caller.items() if p == 'forward') == 6


def test_update_phase_takes_the_foreach_path_as_on_a_gpu():
    def update_kernels(layers: int, foreach: bool) -> int:
        torch.manual_seed(0)
        model = TwoLinears(layers)
        wrapper = wrapper_for(model)
        batch = dict(inputs=torch.randn(5, 4))
        count_ops.count_step(model, wrapper, batch)  # creates the AdamW state
        if foreach:
            return count_ops.count_step(model, wrapper, batch).kernels['update']
        original = count_ops.foreach_on_cpu
        count_ops.foreach_on_cpu = __import__('contextlib').nullcontext
        try:
            return count_ops.count_step(model, wrapper, batch).kernels['update']
        finally:
            count_ops.foreach_on_cpu = original

    # foreach kernels take every tensor at once: the count does not grow with the parameters
    assert update_kernels(2, True) == update_kernels(8, True)
    # the per-tensor loop (PyTorch's CPU default) does
    assert update_kernels(8, False) > update_kernels(2, False) > update_kernels(2, True)


def test_phase_times_takes_the_first_samples_and_one_step_per_timing():
    batch = dict(inputs=[torch.randn(4)] * 8, data_samples=list(range(8)))
    assert count_ops.take(dict(batch, meta='x'), 3) == dict(
        inputs=batch['inputs'][:3], data_samples=[0, 1, 2], meta='x'
    )

    class Stacked(TwoLinears):
        def forward(self, inputs, data_samples=None, mode='loss'):
            seen.append(len(inputs))
            return super().forward(torch.stack(inputs), data_samples, mode)

    seen: list[int] = []
    model = Stacked()
    wrapper = wrapper_for(model)
    timing = count_ops.phase_times(model, wrapper, [batch, batch], sizes=(1, 2, 4), rounds=2)
    assert seen == [1, 1, 2, 2, 4, 4] * 2  # interleaved: every size once per round and batch
    steps = {int(s['step']) for s in wrapper.optimizer.state.values()}
    assert steps == {12}  # each timed step was a real update
    assert set(timing['median_ms']) == {1, 2, 4}
    assert set(timing['fit']) == {'forward', 'backward', 'update'}
    assert 'backward' not in vars(wrapper)
