# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""The ``point`` decoder on the core DETR assembly equals its first release (``legacy_point``) on
the same weights: outputs, losses, gradients and predictions; first-release checkpoints load."""

import copy

import pytest
import torch

from mmrefvlm.models.unit_decoders.detr import rename_legacy_keys
from mmrefvlm.registry import MODELS

from .legacy_point import LegacyPoint
from .test_point_decoder import point_inputs

FIRST_RELEASE_CFG = dict(  # the flat spelling of the first release
    type='PointUnitDecoder',
    in_channels=32,
    num_queries=4,
    d_model=32,
    num_layers=1,
    num_heads=4,
    ffn_dim=64,
    dropout=0.0,
    pyramid_channels=(8, 16, 24, 32),
    clip_channels=24,
    memory_levels=(0, 1),
    memory_size=8,
)


@pytest.mark.parametrize('num_layers', [1, 0])
def test_point_decoder_equals_its_first_release(num_layers):
    cfg = dict(FIRST_RELEASE_CFG, num_layers=num_layers)
    torch.manual_seed(0)
    new = MODELS.build(copy.deepcopy(cfg))
    torch.manual_seed(0)
    old = LegacyPoint(cfg)
    renamed = rename_legacy_keys(old.state_dict(), type(new).legacy_keys)
    assert list(renamed) == list(new.state_dict())
    assert all(torch.equal(v, new.state_dict()[k]) for k, v in renamed.items())  # same init
    assert (new.predictor.decoder is None) == (num_layers == 0)
    torch.manual_seed(1)
    for p in old.parameters():
        p.data.add_(0.05 * torch.randn_like(p))
    new.load_state_dict(old.state_dict(), strict=True)  # first-release keys
    queries, visual, samples = point_inputs()
    for key, val in new(queries, visual).items():
        assert torch.equal(val, old(queries, visual)[key]), key
    reference = copy.deepcopy(new)
    reference._decode = old._decode  # the old decoding, with the (unchanged) loss code
    loss_new = new.loss(queries, visual, samples)
    loss_old = reference.loss(queries, visual, samples)
    assert list(loss_new) == list(loss_old)
    assert all(torch.equal(loss_new[k], loss_old[k]) for k in loss_new)
    sum(loss_new.values()).backward()
    sum(loss_old.values()).backward()
    old_grads = rename_legacy_keys(
        {k: p.grad for k, p in old.named_parameters()}, type(new).legacy_keys
    )
    for name, param in new.named_parameters():
        assert torch.equal(param.grad, old_grads[name]), name
    for a, b in zip(
        new.predict(queries, visual, samples), reference.predict(queries, visual, samples),
        strict=True,
    ):  # fmt: skip
        assert torch.equal(a.points, b.points) and torch.equal(a.scores, b.scores)
