# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""``SyncCounter`` on small hand cases: on CPU tensors (what would synchronise on an accelerator)
and, on a GPU, against ``torch.cuda.set_sync_debug_mode``."""

import warnings

import numpy as np
import pytest
import torch

from mmrefvlm.testing import SyncCounter

X = torch.arange(6.0)
M = X > 2

# name -> (operation on the "device" tensors X / M, expected (d2h, h2d_pageable, h2d_async))
CASES = {
    'item': (lambda: X[0].item(), (1, 0, 0)),
    'bool': (lambda: bool(M.any()), (1, 0, 0)),
    'int_of_max': (lambda: int(X.max()), (1, 0, 0)),
    'tolist': (lambda: X.tolist(), (1, 0, 0)),
    'cpu_then_tolist': (lambda: X.cpu().tolist(), (1, 0, 0)),  # one copy, then host data
    'to_cpu_string': (lambda: X.to('cpu'), (1, 0, 0)),
    'numpy': (lambda: X.numpy(), (1, 0, 0)),
    'mask_index': (lambda: X[M], (1, 0, 0)),
    'mask_assign': (lambda: X.clone().__setitem__(M, 1.0), (1, 0, 0)),
    'nonzero': (lambda: M.nonzero(), (1, 0, 0)),
    'unique': (lambda: torch.unique(X), (1, 0, 0)),
    'bincount': (lambda: torch.bincount(X.long()), (1, 0, 0)),
    'repeat_interleave': (lambda: torch.repeat_interleave(X, X.long()), (1, 0, 0)),
    'repeat_interleave_sized': (
        lambda: torch.repeat_interleave(X, X.long(), output_size=15),
        (0, 0, 0),
    ),
    'equal': (lambda: torch.equal(X, X), (1, 0, 0)),
    'copy_to_host': (lambda: torch.empty(6).copy_(X), (1, 0, 0)),
    'tensor_on_device': (lambda: torch.tensor([1, 2], device=X.device), (0, 1, 0)),
    'new_tensor': (lambda: X.new_tensor([1.0]), (0, 1, 0)),
    'to_device_blocking': (lambda: torch.tensor([1, 2]).to(X.device), (0, 1, 0)),
    'to_device_async': (lambda: torch.tensor([1, 2]).to(X.device, non_blocking=True), (0, 0, 1)),
    'host_index_tensor': (lambda: X[torch.tensor([0, 2])], (0, 1, 0)),
    'host_tensor_in_op': (lambda: X + torch.zeros(6), (0, 1, 0)),
    'copy_to_device': (lambda: X.clone().copy_(torch.ones(6)), (0, 1, 0)),
    # no transfer at all
    'device_math': (lambda: (X * 2).sum(), (0, 0, 0)),
    'device_factory': (lambda: X + torch.zeros(6, device=X.device), (0, 0, 0)),
    'same_device_to': (lambda: X.to(X.device), (0, 0, 0)),
    'long_index_on_device': (
        lambda: X[torch.tensor([0, 2]).to(X.device, non_blocking=True)],
        (0, 0, 1),
    ),
    'index_select_and_split': (lambda: X.index_select(0, M.long()).split([2, 4]), (0, 0, 0)),
    'host_work': (lambda: (torch.tensor([1, 2]) * 2).sum().item(), (0, 0, 0)),
    'numpy_host_work': (lambda: torch.from_numpy(np.arange(3)).sum().item(), (0, 0, 0)),
}


def counts(counter):
    return (counter.num_syncs, counter.num_h2d_pageable, len(counter.of_kind('h2d_async')))


@pytest.mark.parametrize('name', sorted(CASES))
def test_counts_on_cpu_tensors(name):
    fn, expected = CASES[name]
    with SyncCounter() as counter:
        fn()
    assert counts(counter) == expected, counter.report()


def test_events_say_where():
    with SyncCounter() as counter:
        int(M.sum())
    (event,) = counter.events
    assert event.kind == 'd2h' and '_local_scalar_dense' in event.op
    assert 'test_sync_counter.py' in event.where and 'test_events_say_where' in event.where
    assert 'd2h' in counter.report()


def test_mark_host_and_results_of_transfers():
    host = torch.arange(3)
    with SyncCounter() as counter:
        counter.mark_host(host)
        host.tolist()  # declared host memory: free
        on_host = X.cpu()  # one sync; the copy is host memory afterwards
        on_host.tolist()
        (on_host * 2).sum().item()
        dev = host.to(X.device, non_blocking=True)  # async upload; the result is on the device
        dev.sum().item()  # one sync
    assert counts(counter) == (2, 0, 1), counter.report()


def test_counter_leaves_results_unchanged():
    with SyncCounter():
        a = (X[M] * 2).sum()
        b = X.cpu()
    assert a.item() == 2 * (3 + 4 + 5) and b is not X and torch.equal(b, X)


@pytest.mark.gpu  # skipped without CUDA by the repository conftest
@pytest.mark.parametrize('name', sorted(CASES))
def test_counts_agree_with_cuda_sync_debug_mode(name):
    # The same operations on CUDA tensors: the counter (real devices) against PyTorch's own
    # detector. Host->device copies are compared through the counter only (the debug mode warns
    # on blocking copies too, so pageable uploads count there as synchronisations).
    global X, M
    if name in ('numpy', 'host_tensor_in_op'):
        pytest.skip('an error on CUDA tensors')
    fn, (d2h, h2d, _) = CASES[name]
    saved = X, M
    X, M = X.cuda(), M.cuda()
    try:
        fn()  # warm-up (lazy initialisation)
        torch.cuda.synchronize()
        with SyncCounter(simulate=False) as counter:
            fn()
        torch.cuda.synchronize()
        torch.cuda.set_sync_debug_mode('warn')
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter('always')
                fn()
        finally:
            torch.cuda.set_sync_debug_mode('default')
    finally:
        X, M = saved
    cuda_syncs = sum('synchroniz' in str(w.message) for w in caught)
    assert counter.num_syncs == d2h, counter.report()
    if name not in ('to_device_async', 'long_index_on_device'):  # pageable here: staged copies
        assert cuda_syncs == d2h + h2d, (name, [str(w.message) for w in caught])
