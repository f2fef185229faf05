# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""Paper-scale architectures built on the meta device: parameter counts and output shapes."""

import torch

from mmrefvlm.models.vision import (
    CLIP_CONVNEXT_L_512,
    CLIP_VIT_L14_336,
    CLIPViTEncoder,
    ConvNeXtPyramid,
)

# Exact counts of the HF modules (CLIPVisionModel incl. pre/post LayerNorm; ConvNextModel incl. the
# unused pooled LayerNorm), pinned so an accidental architecture change is caught.
CLIP_VIT_L14_336_PARAMS = 303_507_456
CLIP_CONVNEXT_L_PARAMS = 196_230_336


def _clip_vit_formula(c=1024, layers=24, inter=4096, image=336, patch=14):
    tokens = (image // patch) ** 2 + 1
    embed = 3 * patch * patch * c + c + tokens * c  # patch conv (no bias), CLS, positions
    layer = 4 * (c * c + c) + 2 * 2 * c + (c * inter + inter) + (inter * c + c)
    return embed + 2 * c + layers * layer + 2 * c  # + pre and post LayerNorm


def _convnext_formula(depths=(3, 3, 27, 3), dims=(192, 384, 768, 1536), patch=4):
    total = 3 * patch * patch * dims[0] + dims[0] + 2 * dims[0]  # stem conv + LayerNorm
    for i, (d, c) in enumerate(zip(depths, dims, strict=True)):
        if i:
            total += 2 * dims[i - 1] + 4 * dims[i - 1] * c + c  # LayerNorm + 2x2 conv
        # dwconv 7x7 + LN + fc1 + fc2 + layer scale
        total += d * ((49 * c + c) + 2 * c + (4 * c * c + 4 * c) + (4 * c * c + c) + c)
    return total + 2 * dims[-1]  # pooled LayerNorm (timm head.norm)


def test_clip_vit_l14_336_on_meta():
    with torch.device('meta'):
        enc = CLIPViTEncoder(config=CLIP_VIT_L14_336)
        out = enc(torch.empty(1, 3, 336, 336))
    n = sum(p.numel() for p in enc.parameters())
    print(f'CLIP ViT-L/14-336 vision tower: {n:,} parameters')
    assert n == _clip_vit_formula() == CLIP_VIT_L14_336_PARAMS
    assert (enc.out_channels, enc.grid_size, enc.num_tokens) == (1024, 24, 576)
    assert out.shape == (1, 1024, 24, 24) and out.device.type == 'meta'


def test_clip_convnext_l_512_on_meta():
    with torch.device('meta'):
        pyr = ConvNeXtPyramid(config=CLIP_CONVNEXT_L_512)
        feats = pyr(torch.empty(1, 3, 512, 512))
    n = sum(p.numel() for p in pyr.parameters())
    print(f'CLIP-ConvNeXt-L trunk: {n:,} parameters')
    assert n == _convnext_formula() == CLIP_CONVNEXT_L_PARAMS
    assert pyr.out_channels == [192, 384, 768, 1536] and pyr.strides == [4, 8, 16, 32]
    assert [tuple(f.shape) for f in feats] == [
        (1, 192, 128, 128),
        (1, 384, 64, 64),
        (1, 768, 32, 32),
        (1, 1536, 16, 16),
    ]
