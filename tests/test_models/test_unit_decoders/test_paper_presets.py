# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""Paper-scale decoder presets build (on the meta device: no memory) with the expected sizes."""

import copy

import pytest
import torch

from mmrefvlm.models.unit_decoders import (
    PAPER_BOX_DECODER,
    PAPER_DEPTH_DECODER,
    PAPER_KEYPOINT_DECODER,
    PAPER_MASK_DECODER,
)
from mmrefvlm.registry import MODELS

PRESETS = dict(
    box=PAPER_BOX_DECODER,
    mask=PAPER_MASK_DECODER,
    keypoint=PAPER_KEYPOINT_DECODER,
    depth=PAPER_DEPTH_DECODER,
)


def _count(cfg) -> int:
    with torch.device('meta'):
        decoder = MODELS.build(copy.deepcopy(cfg))
    assert all(p.device.type == 'meta' for p in decoder.parameters())
    return sum(p.numel() for p in decoder.parameters())


def _detr_layer(d: int, ffn: int) -> int:
    attn = 3 * d * d + 3 * d + d * d + d
    return 2 * attn + (d * ffn + ffn + ffn * d + d) + 3 * 2 * d


def test_box_preset_parameter_count_by_hand():
    d = 256
    expected = (
        4096 * d
        + d
        + 100 * d  # query projection + slot embedding
        + (192 + 384 + 768 + 1024) * d
        + d  # fused memory Linear(2368 -> 256)
        + 6 * _detr_layer(d, 2048)
        + 2 * d  # 6 DETR layers + final LayerNorm
        + 2 * (d * d + d)
        + d * 4
        + 4
    )  # 3-layer box MLP
    assert _count(PAPER_BOX_DECODER) == expected == 11_286_532


@pytest.mark.parametrize('unit', sorted(PRESETS))
def test_paper_presets_build_on_meta(unit, capsys):
    num = _count(PRESETS[unit])
    with capsys.disabled():
        print(f'\n[paper preset] {unit:9s} decoder: {num / 1e6:7.2f} M parameters')
    assert 5e6 < num < 40e6
