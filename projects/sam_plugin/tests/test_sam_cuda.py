# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""The SAM mask decoder plugin on CUDA: the same losses, gradients and masks as on the CPU."""

import copy
import dataclasses

import pytest
import torch

from mmrefvlm.registry import MODELS

from .test_sam_decoder import TINY_CFG, sam_inputs

pytestmark = pytest.mark.gpu


def _to(inputs, device):
    queries, visual, samples = inputs
    move = lambda x: x.to(device) if isinstance(x, torch.Tensor) else x  # noqa: E731
    queries = dataclasses.replace(queries, **{f.name: move(getattr(queries, f.name))
                                               for f in dataclasses.fields(queries)})  # fmt: skip
    visual = dataclasses.replace(
        visual,
        pyramid=tuple(p.to(device) for p in visual.pyramid),
        clip=visual.clip.to(device),
        valid_hw=visual.valid_hw.to(device),
    )
    return queries, visual, [s.to(device) for s in samples]


def test_sam_decoder_on_cuda_matches_cpu(no_tf32):
    torch.manual_seed(0)
    cpu = MODELS.build(TINY_CFG)
    gpu = copy.deepcopy(cpu).cuda()
    cpu.train(), gpu.train()
    inputs = sam_inputs(num_queries=(3, 1))
    loss_cpu = cpu.loss(*inputs)
    loss_gpu = gpu.loss(*_to(inputs, 'cuda'))
    assert loss_cpu.keys() == loss_gpu.keys() == {'loss_mask_focal', 'loss_mask_dice'}
    for key, value in loss_cpu.items():
        assert loss_gpu[key].device.type == 'cuda'
        torch.testing.assert_close(loss_gpu[key].cpu(), value, atol=1e-4, rtol=1e-3)
    sum(loss_cpu.values()).backward()
    sum(loss_gpu.values()).backward()
    grads = dict(gpu.named_parameters())
    checked = 0
    for name, p in cpu.named_parameters():
        if p.grad is not None:
            torch.testing.assert_close(grads[name].grad.cpu(), p.grad, atol=1e-4, rtol=1e-2)
            checked += 1
    assert checked > 0
    cpu.eval(), gpu.eval()
    with torch.no_grad():
        pred_cpu = cpu.predict(*inputs, rescale=True)
        pred_gpu = gpu.predict(*_to(inputs, 'cuda'), rescale=True)
    for a, b in zip(pred_cpu, pred_gpu, strict=True):
        assert b.masks.shape == a.masks.shape
        # binarised masks: allow the rare pixel whose logit sits at 0 within float rounding
        assert (b.masks.cpu() != a.masks).float().mean() < 1e-3
