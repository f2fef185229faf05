# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
import pytest
import torch
from mmengine.registry import init_default_scope

from mmrefvlm.registry import MODELS
from mmrefvlm.testing import SyncCounter


@pytest.mark.parametrize(
    'kwargs',
    [dict(avg_factor=7), {}, dict(reduction_override='none'), dict(reduction_override='sum')],
)
def test_giou_loss_equals_mmdet(kwargs):
    init_default_scope('mmrefvlm')
    torch.manual_seed(0)
    a, b = torch.rand(30, 4), torch.rand(30, 4)
    a[:, 2:] += a[:, :2]
    b[:, 2:] += b[:, :2]
    a[0], a[1] = b[0], torch.tensor([0.5, 0.5, 0.5, 0.5])  # identical pair, degenerate box
    ours = MODELS.build(dict(type='GIoULoss', loss_weight=2.0))
    theirs = MODELS.build(dict(type='mmdet.GIoULoss', loss_weight=2.0))
    xa, xb = a.clone().requires_grad_(), a.clone().requires_grad_()
    la, lb = ours(xa, b, **kwargs), theirs(xb, b, **kwargs)
    la.sum().backward()
    lb.sum().backward()
    assert torch.equal(la, lb) and torch.equal(xa.grad, xb.grad)
    with SyncCounter() as counter:
        ours(a, b, avg_factor=3)
    assert counter.events == []  # mmdet's makes a blocking host->device copy per call
