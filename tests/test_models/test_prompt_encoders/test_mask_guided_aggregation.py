# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""MaskGuidedAggregation against a per-prompt loop reference and hand-computed values."""

import math

import pytest
import torch
import torch.nn.functional as F

from mmrefvlm.models.prompt_encoders import MaskGuidedAggregation, grid_position_code
from mmrefvlm.registry import MODELS


def reference_position_code(k, channels, temperature):
    """The documented formula, element by element."""
    half = channels // 2
    code = torch.zeros(k * k, channels, dtype=torch.float64)
    for r in range(k):
        for c in range(k):
            for axis, pos in enumerate((r, c)):
                for i in range(half // 2):
                    freq = temperature ** (-2 * i / half)
                    code[r * k + c, axis * half + 2 * i] = math.sin(pos * freq)
                    code[r * k + c, axis * half + 2 * i + 1] = math.cos(pos * freq)
    return code


def reference_aggregation(feats, masks, batch_idx, k=3, temperature=10000.0, alpha=1.0):
    """Straightforward per-prompt, per-block loop."""
    _, channels, height, width = feats.shape
    code = reference_position_code(k, channels, temperature)
    out = torch.zeros(masks.shape[0], k * k, channels, dtype=torch.float64)
    for p in range(masks.shape[0]):
        m = F.interpolate(masks[p][None, None].double(), size=(height, width), mode='area')[0, 0]
        if m.sum() > 0:
            m = m / m.sum()
        f = feats[int(batch_idx[p])].double()
        for r in range(k):
            rows = [h for h in range(height) if h * k // height == r]
            for c in range(k):
                cols = [w for w in range(width) if w * k // width == c]
                block = (f[:, rows][:, :, cols] * m[rows][:, cols]).sum((1, 2))
                out[p, r * k + c] = block + alpha * code[r * k + c]
    return out


@pytest.mark.parametrize('soft', [False, True])
@pytest.mark.parametrize(
    'shape,mask_size,k',
    [
        ((2, 8, 6, 6), (12, 12), 3),
        ((3, 12, 7, 5), (14, 10), 3),  # not divisible
        ((2, 4, 8, 8), (8, 8), 2),
        ((1, 8, 9, 9), (20, 17), 4),  # non-integer
        ((4, 8, 6, 9), (18, 9), 3),
    ],
)
def test_matches_per_prompt_loop_reference(shape, mask_size, k, soft):
    gen = torch.Generator().manual_seed(0)
    feats = torch.randn(*shape, generator=gen)
    masks = torch.rand(5, *mask_size, generator=gen)
    masks = masks * (masks > 0.5) if soft else masks > 0.6
    batch_idx = torch.randint(0, shape[0], (5,), generator=gen)
    module = MaskGuidedAggregation(k=k, temperature=100.0)
    out = module(feats, masks, batch_idx)
    assert out.shape == (5, k * k, shape[1]) and module.num_tokens == k * k
    ref = reference_aggregation(feats, masks, batch_idx, k=k, temperature=100.0)
    torch.testing.assert_close(out.double(), ref, atol=1e-5, rtol=1e-5)


def test_hand_computed_6x6_k3():
    h, w = torch.meshgrid(torch.arange(6.0), torch.arange(6.0), indexing='ij')
    feats = torch.stack([h * 6 + w, torch.ones(6, 6), h, w])[None]  # (1, 4, 6, 6)
    mask = torch.zeros(1, 6, 6, dtype=torch.bool)
    mask[0, 0:2, 0:4] = True  # blocks (0, 0) and (0, 1)
    tokens = MaskGuidedAggregation(k=3, alpha=0.0)(feats, mask, torch.tensor([0]))[0]
    expected = torch.zeros(9, 4)
    expected[0] = torch.tensor([14 / 8, 4 / 8, 2 / 8, 2 / 8])  # cells 0, 1, 6, 7
    expected[1] = torch.tensor([22 / 8, 4 / 8, 2 / 8, 10 / 8])  # cells 2, 3, 8, 9
    torch.testing.assert_close(tokens, expected)
    # C = 4: one frequency (1) per axis, so PE[r * 3 + c] = (sin r, cos r, sin c, cos c).
    code = grid_position_code(3, 4)
    for r in range(3):
        for c in range(3):
            torch.testing.assert_close(
                code[r * 3 + c], torch.tensor([math.sin(r), math.cos(r), math.sin(c), math.cos(c)])
            )
    with_code = MaskGuidedAggregation(k=3)(feats, mask, torch.tensor([0]))[0]
    torch.testing.assert_close(with_code, expected + code)


def test_blocks_are_a_true_2d_grid_not_raster_bands():
    # The authors' reshape(b, c, 9, 8, 8) of a 24 x 24 map gives horizontal bands; a mask in the
    # top-right 8 x 8 block would spread over the first bands. Here it must fill token k - 1 only.
    feats = torch.ones(1, 4, 24, 24)
    module = MaskGuidedAggregation(k=3, alpha=0.0)
    for r, c in [(0, 2), (2, 0), (1, 1)]:
        mask = torch.zeros(1, 24, 24)
        mask[0, 8 * r : 8 * r + 8, 8 * c : 8 * c + 8] = 1.0
        tokens = module(feats, mask, torch.tensor([0]))[0]
        filled = tokens.abs().sum(-1).nonzero().flatten().tolist()
        assert filled == [r * 3 + c]
        torch.testing.assert_close(tokens[r * 3 + c], torch.ones(4))


def test_constant_feature_tokens_sum_to_the_constant():
    constant = torch.tensor([1.5, -2.0, 0.25, 7.0])
    feats = constant[None, :, None, None].expand(2, 4, 9, 11).contiguous()
    masks = torch.zeros(3, 30, 30)
    masks[0, 3:20, 5:9] = 1.0
    masks[1] = torch.rand(30, 30)
    masks[2, 29, 0] = 1.0  # a single pixel (thin prompt keeps mass)
    module = MaskGuidedAggregation()
    tokens = module(feats, masks, torch.tensor([0, 1, 1]))
    code = grid_position_code(3, 4)
    torch.testing.assert_close((tokens - code).sum(1), constant.expand(3, 4))


def test_empty_mask_gives_position_code_only_and_no_nan():
    feats = torch.randn(1, 8, 6, 6)
    tokens = MaskGuidedAggregation()(feats, torch.zeros(2, 6, 6), torch.tensor([0, 0]))
    assert torch.isfinite(tokens).all()
    torch.testing.assert_close(tokens, grid_position_code(3, 8).expand(2, 9, 8))


def test_zero_prompts_and_gradient_to_feats():
    feats = torch.randn(2, 8, 6, 6, requires_grad=True)
    module = MaskGuidedAggregation()
    no_masks = torch.zeros(0, 12, 12, dtype=torch.bool)
    empty = module(feats, no_masks, torch.zeros(0, dtype=torch.long))
    assert empty.shape == (0, 9, 8)
    empty.sum().backward()  # still in the graph (fake inputs)
    assert feats.grad is not None and not feats.grad.any()
    feats.grad = None
    masks = torch.rand(3, 6, 6)
    batch_idx = torch.tensor([1, 1, 0])
    module(feats, masks, batch_idx).sum().backward()
    # d(sum of tokens)/dF[b, c, h, w] = sum over prompts of image b of their normalised mask.
    norm = masks / masks.sum((1, 2), keepdim=True)
    expected = torch.stack([norm[2], norm[0] + norm[1]])[:, None].expand(2, 8, 6, 6)
    torch.testing.assert_close(feats.grad, expected)


def test_images_without_prompts_and_bad_batch_idx():
    gen = torch.Generator().manual_seed(5)
    feats = torch.randn(4, 8, 6, 6, generator=gen)
    masks = torch.rand(2, 12, 12, generator=gen) > 0.5
    module = MaskGuidedAggregation()
    batch_idx = torch.tensor([2, 2])  # images 0, 1 and 3 have no prompt
    torch.testing.assert_close(
        module(feats, masks, batch_idx).double(),
        reference_aggregation(feats, masks, batch_idx),
        atol=1e-5,
        rtol=1e-5,
    )
    with pytest.raises(ValueError, match='batch_idx must be in'):
        module(feats, masks, torch.tensor([0, 4]))


def test_batch_idx_routing():
    gen = torch.Generator().manual_seed(3)
    feats = torch.randn(3, 8, 6, 6, generator=gen)
    masks = torch.rand(4, 6, 6, generator=gen)
    batch_idx = torch.tensor([2, 0, 2, 1])
    module = MaskGuidedAggregation()
    out = module(feats, masks, batch_idx)
    for p, b in enumerate(batch_idx.tolist()):
        alone = module(feats[b : b + 1], masks[p : p + 1], torch.tensor([0]))
        torch.testing.assert_close(out[p : p + 1], alone)


@pytest.mark.parametrize('dtype', [torch.float64, torch.bfloat16])
def test_dtype_and_device_kept(dtype):
    feats = torch.randn(2, 8, 6, 6)
    masks = torch.rand(3, 12, 12) > 0.5
    batch_idx = torch.tensor([0, 1, 1])
    out = MaskGuidedAggregation()(feats.to(dtype), masks, batch_idx)
    assert out.dtype == dtype and out.device == feats.device
    ref = MaskGuidedAggregation()(feats, masks, batch_idx)
    torch.testing.assert_close(out.float(), ref, atol=5e-2, rtol=2e-2)


def test_no_parameters_registry_and_errors():
    module = MODELS.build(dict(type=MaskGuidedAggregation, k=2, temperature=50.0))
    assert module.num_tokens == 4 and not list(module.parameters())
    with pytest.raises(ValueError, match='multiple of 4'):
        module(torch.zeros(1, 6, 4, 4), torch.ones(1, 4, 4), torch.tensor([0]))
    with pytest.raises(ValueError, match='batch_idx'):
        module(torch.zeros(1, 8, 4, 4), torch.ones(2, 4, 4), torch.tensor([0]))
    with pytest.raises(ValueError, match='smaller than k'):
        MaskGuidedAggregation(k=5)(torch.zeros(1, 8, 4, 4), torch.ones(1, 4, 4), torch.tensor([0]))
    with pytest.raises(ValueError, match='k must'):
        MaskGuidedAggregation(k=0)


@pytest.mark.parametrize('alpha', [0.5, -2.0])
def test_alpha_scales_the_position_code(alpha):
    # The tests above use alpha 0 and the default 1, the two values at which alpha * code,
    # alpha ** 2 * code and a dropped alpha all agree.
    gen = torch.Generator().manual_seed(11)
    feats = torch.randn(2, 8, 6, 6, generator=gen)
    masks = torch.rand(3, 12, 12, generator=gen)
    batch_idx = torch.tensor([1, 0, 1])
    out = MaskGuidedAggregation(alpha=alpha)(feats, masks, batch_idx)
    ref = reference_aggregation(feats, masks, batch_idx, alpha=alpha)
    torch.testing.assert_close(out.double(), ref, atol=1e-5, rtol=1e-5)
