# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""Shared decoder layers: masks, query projection, fusion, masked DETR decoder, FPN."""

import pytest
import torch

from mmrefvlm.models.unit_decoders.layers import (
    FPNPixelDecoder,
    FusedMemory,
    PyramidFusion,
    QueryDecoder,
    QueryProjection,
    self_attention_mask,
    valid_region_mask,
)
from mmrefvlm.structures import UnitQueries
from mmrefvlm.testing import demo_unit_inputs


def test_valid_region_mask_matches_brute_force():
    valid_hw = torch.tensor([[0.75, 1.0], [1.0, 0.3], [0.01, 0.5]])
    got = valid_region_mask(valid_hw, 8, 6)
    for n, (vh, vw) in enumerate(valid_hw.tolist()):
        for i in range(8):
            for j in range(6):
                ok_i = (i + 0.5) / 8 < vh or i == 0
                ok_j = (j + 0.5) / 6 < vw or j == 0
                assert bool(got[n, i, j]) == (ok_i and ok_j), (n, i, j)


def test_self_attention_mask_semantics():
    key_mask = torch.tensor([[True, True, False]])
    groups = torch.tensor([[0, 1, 1]])
    blocked = self_attention_mask(key_mask, num_heads=2, groups=groups)
    assert blocked.shape == (2, 3, 3)
    allowed = ~blocked[0]
    expected = torch.tensor([[1, 0, 0], [0, 1, 0], [0, 1, 1]], dtype=torch.bool)
    assert torch.equal(allowed, expected)
    allowed = ~self_attention_mask(key_mask, 1)[0]
    assert torch.equal(allowed, torch.tensor([[1, 1, 0], [1, 1, 0], [1, 1, 1]], dtype=torch.bool))


def test_query_projection_slot_is_rank_among_real_queries():
    proj = QueryProjection(4, 8, num_queries=3)
    mask = torch.tensor([[False, True, False, True]])
    q = UnitQueries(torch.randn(1, 4, 4), mask, torch.tensor([[-1, 0, -1, 1]]))
    _, pos = proj(q)
    torch.testing.assert_close(pos[0, 1], proj.slot_embed.weight[0])
    torch.testing.assert_close(pos[0, 3], proj.slot_embed.weight[1])


def test_query_decoder_equals_decoding_only_the_real_queries():
    torch.manual_seed(0)
    dec = QueryDecoder(d_model=16, num_layers=2, num_heads=2, ffn_dim=32).eval()
    dec.init_weights()
    mem = FusedMemory(
        torch.randn(1, 10, 16),
        torch.randn(1, 10, 16),
        torch.tensor([[False] * 7 + [True] * 3]),
        (2, 5),
    )
    query, pos = torch.randn(1, 5, 16), torch.randn(1, 5, 16)
    mask = torch.tensor([[True, False, True, True, False]])
    full = dec(query, pos, mask, mem)
    keep = mask[0]
    ref = dec(query[:, keep], pos[:, keep], torch.ones(1, 3, dtype=torch.bool), mem)
    torch.testing.assert_close(full[:, keep], ref, atol=1e-5, rtol=1e-5)
    assert not full[:, ~keep].any()  # padded outputs are zeroed
    # Masked memory tokens do not matter.
    garbage = mem.memory.clone()
    garbage[:, 7:] = 1e3
    again = dec(query, pos, mask, mem._replace(memory=garbage))
    torch.testing.assert_close(again, full, atol=1e-5, rtol=1e-5)


def test_query_decoder_groups_isolate_queries():
    torch.manual_seed(0)
    dec = QueryDecoder(d_model=16, num_layers=1, num_heads=2, ffn_dim=32).eval()
    mem = FusedMemory(torch.randn(1, 6, 16), torch.randn(1, 6, 16), None, (2, 3))
    query, pos = torch.randn(1, 4, 16), torch.randn(1, 4, 16)
    mask, groups = torch.ones(1, 4, dtype=torch.bool), torch.tensor([[0, 0, 1, 1]])
    full = dec(query, pos, mask, mem, groups=groups)
    alone = dec(query[:, :2], pos[:, :2], mask[:, :2], mem)
    torch.testing.assert_close(full[:, :2], alone, atol=1e-5, rtol=1e-5)


def test_pyramid_fusion_shapes_and_padding_mask():
    _, visual, _ = demo_unit_inputs('box', num_queries=(1, 1), ori_shapes=[(16, 32), (32, 8)])
    fusion = PyramidFusion((8, 16, 24, 32), 24, 32, levels=(0, 2), use_clip=True, size=8)
    mem = fusion(visual)
    assert mem.memory.shape == (2, 64, 32) and mem.pos.shape == (2, 64, 32)
    assert mem.hw == (8, 8)
    torch.testing.assert_close(
        mem.padding_mask, ~valid_region_mask(visual.valid_hw, 8, 8).flatten(1)
    )
    assert mem.padding_mask[0].view(8, 8)[4:].all() and not mem.padding_mask[0].view(8, 8)[:4].any()
    clip_only = PyramidFusion((8, 16, 24, 32), 24, 32, levels=(), use_clip=True)(visual)
    assert clip_only.hw == (4, 4)
    with pytest.raises(ValueError, match='levels'):
        PyramidFusion((8, 16), 24, 32, levels=(1, 0))
    with pytest.raises(ValueError):
        PyramidFusion((8, 16), 24, 32, levels=(), use_clip=False)


@pytest.mark.parametrize('use_clip', [True, False])
def test_fpn_pixel_decoder_shapes(use_clip):
    _, visual, _ = demo_unit_inputs('mask', num_queries=(1, 2))
    fpn = FPNPixelDecoder(
        (8, 16, 24, 32), 24, levels=(0, 1, 2), use_clip=use_clip, feat_channels=16, out_channels=12
    )
    src = visual.clip if use_clip else visual.pyramid[2]
    src.requires_grad_(True)
    visual.pyramid[0].requires_grad_(True)
    out = fpn(visual)
    assert out.shape == (2, 12, 16, 16)
    # The output depends on every used input (the finest lateral and the stem source).
    out.sum().backward()
    assert src.grad.abs().sum() > 0 and visual.pyramid[0].grad.abs().sum() > 0
