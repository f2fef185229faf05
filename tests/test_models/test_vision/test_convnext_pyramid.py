# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
import pytest
import torch
from mmengine.model import BaseModule
from torch import nn
from transformers import ConvNextConfig, ConvNextModel

from mmrefvlm.models.vision import OPENAI_CLIP_MEAN, TINY_CONVNEXT, ConvNeXtPyramid
from mmrefvlm.registry import MODELS


class _Parent(BaseModule):
    def __init__(self, pyramid: nn.Module) -> None:
        super().__init__()
        self.pyramid = pyramid
        self.head = nn.Linear(sum(pyramid.out_channels), 1)

    def forward(self, x):
        return self.head(torch.cat([f.mean((2, 3)) for f in self.pyramid(x)], 1))


def test_shapes_and_properties():
    pyr = ConvNeXtPyramid(config=TINY_CONVNEXT)
    feats = pyr(torch.randn(2, 3, 64, 64))
    assert [tuple(f.shape) for f in feats] == [
        (2, 16, 16, 16),
        (2, 32, 8, 8),
        (2, 64, 4, 4),
        (2, 128, 2, 2),
    ]
    assert pyr.out_channels == [16, 32, 64, 128] and pyr.strides == [4, 8, 16, 32]
    assert pyr.num_levels == 4 and pyr.image_size == 64 and pyr.mean == OPENAI_CLIP_MEAN
    assert [tuple(f.shape[-2:]) for f in pyr(torch.randn(1, 3, 96, 64))] == [
        (24, 16),
        (12, 8),
        (6, 4),
        (3, 2),
    ]


def test_levels_are_the_stage_outputs():
    """hidden_states[1:] must be the stage outputs (index convention of transformers 5.x)."""
    pyr = ConvNeXtPyramid(config=dict(TINY_CONVNEXT, depths=[2, 1, 2, 1]))
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        h = pyr.model.embeddings(x)
        expected = []
        for stage in pyr.model.encoder.stages:
            h = stage(h)
            expected.append(h)
    for got, ref in zip(pyr(x), expected, strict=True):
        torch.testing.assert_close(got, ref, rtol=0, atol=0)


def test_frozen_semantics():
    # drop_path 0.5 would make train-mode features random: frozen must keep eval mode
    pyr = ConvNeXtPyramid(config=dict(TINY_CONVNEXT, drop_path_rate=0.5))
    parent = _Parent(pyr)
    parent.train()
    assert parent.head.training and not any(m.training for m in pyr.modules())
    assert not any(p.requires_grad for p in pyr.parameters())
    x = torch.randn(2, 3, 64, 64)
    first = pyr(x)
    assert not any(f.requires_grad for f in first)
    assert all(f.grad_fn is None for f in pyr(x.clone().requires_grad_()))
    for a, b in zip(first, pyr(x), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    before = {k: v.clone() for k, v in pyr.state_dict().items()}
    opt = torch.optim.AdamW(parent.parameters(), lr=0.1, weight_decay=0.5)
    parent(x).sum().backward()
    opt.step()
    assert all(torch.equal(v, before[k]) for k, v in pyr.state_dict().items())


def test_unfrozen_trains():
    pyr = ConvNeXtPyramid(config=TINY_CONVNEXT, frozen=False)
    parent = _Parent(pyr)
    parent.train()
    assert pyr.model.training
    parent(torch.randn(2, 3, 64, 64)).sum().backward()
    grads = [p.grad for n, p in pyr.named_parameters() if not n.startswith('model.layernorm.')]
    assert all(g is not None and g.abs().sum() > 0 for g in grads)


def test_local_path_roundtrip_and_builds(tmp_path):
    pyr = ConvNeXtPyramid(config=TINY_CONVNEXT)
    pyr.model.save_pretrained(tmp_path)
    again = MODELS.build(dict(type='ConvNeXtPyramid', name_or_path=str(tmp_path)))
    x = torch.randn(1, 3, 64, 64)
    for a, b in zip(again(x), pyr(x), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    hf = ConvNextModel(ConvNextConfig(**TINY_CONVNEXT))
    assert ConvNeXtPyramid(model=hf).model is hf
    half = ConvNeXtPyramid(config=TINY_CONVNEXT, torch_dtype='bfloat16')
    assert all(f.dtype == torch.bfloat16 for f in half(x))
    with pytest.raises(ValueError, match='exactly one'):
        ConvNeXtPyramid()
    with pytest.raises(TypeError, match='ConvNextModel'):
        ConvNeXtPyramid(model=nn.Conv2d(3, 3, 1))
