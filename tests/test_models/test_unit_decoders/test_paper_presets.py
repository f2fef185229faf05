# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""Paper-scale decoder presets build (on the meta device: no memory) with the expected sizes."""

import copy

import pytest
import torch

from mmrefvlm.models.projectors import MLPProjector
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


# Hand counts from the layer shapes (PyTorch conventions: weight + bias), independent of the code.
D, LLM, CLIP_L = 256, 4096, 1024
CONVNEXT_L = (192, 384, 768, 1536)


def _linear(i: int, o: int) -> int:
    return i * o + o


def _conv_gn(i: int, o: int, k: int) -> int:
    """Conv (no bias) + GroupNorm (weight and bias)."""
    return i * o * k * k + 2 * o


def _mlp(i: int, h: int, o: int, layers: int) -> int:
    return _linear(i, h) + (layers - 2) * _linear(h, h) + _linear(h, o)


def _query_proj(num_queries: int) -> int:
    return _linear(LLM, D) + num_queries * D  # Linear + slot embedding


def _detr_decoder(layers: int) -> int:
    return layers * _detr_layer(D, 2048) + 2 * D  # + final LayerNorm


def _fpn(levels=(0, 1, 2)) -> int:
    """3x3 stem on the CLIP grid, a 1x1 lateral and a 3x3 output per level, 3x3 projection."""
    laterals = sum(_conv_gn(CONVNEXT_L[lv], D, 1) for lv in levels)
    return _conv_gn(CLIP_L, D, 3) + laterals + len(levels) * _conv_gn(D, D, 3) + D * D * 9 + D


BOX = _query_proj(100) + _linear(192 + 384 + 768 + CLIP_L, D) + _detr_decoder(6) + _mlp(D, D, 4, 3)
HAND_COUNTS = dict(
    box=BOX,
    # memory: the CLIP grid only; mask embedding MLP to mask_dim 256
    mask=_query_proj(30) + _linear(CLIP_L, D) + _detr_decoder(6) + _fpn() + _mlp(D, D, 256, 3),
    # the box decoder + point input projection, 17 point embeddings, a second DETR, point MLP,
    # visibility head
    keypoint=BOX + _linear(D, D) + 17 * D + _detr_decoder(6) + _mlp(D, D, 2, 3) + _linear(D, 1),
    # FiLM Linear(D -> 2 x 256), then 3x3 conv-GN-ReLU and a 1x1 conv to one channel
    depth=_query_proj(10) + _fpn() + _linear(D, 2 * 256) + _conv_gn(256, 256, 3) + _linear(256, 1),
)


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
    assert _count(PAPER_BOX_DECODER) == expected == HAND_COUNTS['box'] == 11_286_532


@pytest.mark.parametrize('unit', sorted(PRESETS))
def test_paper_presets_build_on_meta(unit, capsys):
    num = _count(PRESETS[unit])
    with capsys.disabled():
        print(f'\n[paper preset] {unit:9s} decoder: {num / 1e6:7.2f} M parameters')
    assert num == HAND_COUNTS[unit]  # exact: no tolerance


def test_stage2_trainable_size_agrees_with_the_paper():
    """REF-VLM Table 13: 248M parameters in all, 199M of them the frozen ConvNeXt-L backbone. The
    rest is the shared projector (CLIP-L 1024 -> Vicuna 4096, Linear-GELU-Linear), the
    parameter-free VPT encoder and the stage-2 box and mask decoders. Both table entries are
    rounded to 1M, so their difference is known to +-1M."""
    with torch.device('meta'):
        projector = MLPProjector(CLIP_L, LLM)
    num_projector = sum(p.numel() for p in projector.parameters())
    assert num_projector == _linear(CLIP_L, LLM) + _linear(LLM, LLM)
    total = num_projector + _count(PAPER_BOX_DECODER) + _count(PAPER_MASK_DECODER)
    assert abs(total - (248e6 - 199e6)) <= 1e6, total
