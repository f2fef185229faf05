# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""RoIAlign against hand cases and a brute-force scalar implementation of torchvision's
documented algorithm; 2-D vs row pooling of a reference image's grid."""

import math

import pytest
import torch

from projects.anyref.anyref_seg import bilinear_at, pool_grid, roi_align


def brute_force_roi_align(feat, box, out_hw, scale, ratio, aligned):
    """torchvision's ``roi_align`` CPU kernel, written out with Python scalars (one (C, H, W) map,
    one box ``x1, y1, x2, y2``)."""
    c, h, w = feat.shape
    off = 0.5 if aligned else 0.0
    x1, y1, x2, y2 = (v * scale - off for v in box)
    rw, rh = x2 - x1, y2 - y1
    if not aligned:
        rw, rh = max(rw, 1.0), max(rh, 1.0)
    bh, bw = rh / out_hw[0], rw / out_hw[1]
    gh = ratio if ratio > 0 else math.ceil(rh / out_hw[0])
    gw = ratio if ratio > 0 else math.ceil(rw / out_hw[1])
    out = torch.zeros(c, *out_hw)

    def bilinear(y, x):
        if y < -1.0 or y > h or x < -1.0 or x > w:
            return torch.zeros(c)
        y, x = max(y, 0.0), max(x, 0.0)
        yl, xl = int(y), int(x)
        if yl >= h - 1:
            yl = yh = h - 1
            y = float(yl)
        else:
            yh = yl + 1
        if xl >= w - 1:
            xl = xh = w - 1
            x = float(xl)
        else:
            xh = xl + 1
        ly, lx = y - yl, x - xl
        return (
            (1 - ly) * (1 - lx) * feat[:, yl, xl]
            + (1 - ly) * lx * feat[:, yl, xh]
            + ly * (1 - lx) * feat[:, yh, xl]
            + ly * lx * feat[:, yh, xh]
        )

    for ph in range(out_hw[0]):
        for pw in range(out_hw[1]):
            acc = torch.zeros(c)
            for iy in range(gh):
                y = y1 + ph * bh + (iy + 0.5) * bh / gh
                for ix in range(gw):
                    x = x1 + pw * bw + (ix + 0.5) * bw / gw
                    acc += bilinear(y, x)
            out[:, ph, pw] = acc / max(gh * gw, 1)
    return out


def test_hand_cases():
    feat = torch.arange(16.0).view(1, 1, 4, 4)
    # a box covering the map exactly, 4 x 4 bins, aligned: each bin is one cell, read at its centre
    out = roi_align(feat, torch.tensor([[0.0, 0, 0, 4, 4]]), 4, aligned=True)
    torch.testing.assert_close(out[0], feat[0])
    # a constant map gives the constant wherever the box lies inside it
    const = torch.full((1, 3, 5, 7), 2.5)
    out = roi_align(const, torch.tensor([[0.0, 0.7, 1.2, 5.9, 4.1]]), 4, sampling_ratio=3)
    torch.testing.assert_close(out, torch.full((1, 3, 4, 4), 2.5))
    # bilinear sampling is exact on a linear map: bin (i, j) = its centre's x (aligned frame)
    ramp = torch.arange(8.0).repeat(8, 1)[None, None]  # value = column index
    out = roi_align(ramp, torch.tensor([[0.0, 1.0, 1.0, 5.0, 5.0]]), 2, aligned=True)
    # box in pixel-index space: [0.5, 4.5) -> bin centres x = 1.5, 3.5
    torch.testing.assert_close(out[0, 0], torch.tensor([[1.5, 3.5], [1.5, 3.5]]))
    # spatial_scale maps input coordinates onto the grid
    a = roi_align(ramp, torch.tensor([[0.0, 2.0, 2.0, 10.0, 10.0]]), 2, spatial_scale=0.5)
    torch.testing.assert_close(a, out)
    # border rule: a sample more than one cell outside the map reads 0
    assert bilinear_at(feat[0], torch.tensor([-1.5]), torch.tensor([0.0]))[0, 0] == 0
    assert bilinear_at(feat[0], torch.tensor([-0.5]), torch.tensor([0.0]))[0, 0] == 0  # at 0
    assert bilinear_at(feat[0], torch.tensor([3.7]), torch.tensor([3.2]))[0, 0] == 15


@pytest.mark.parametrize('aligned', [True, False])
@pytest.mark.parametrize('ratio', [-1, 2])
def test_matches_brute_force(aligned, ratio):
    gen = torch.Generator().manual_seed(3)
    feat = torch.randn(2, 3, 6, 9, generator=gen)
    boxes = torch.tensor(
        [
            [0, 0.0, 0.0, 9.0, 6.0],  # the whole map
            [1, 1.3, 0.4, 4.2, 5.7],
            [0, 6.5, 2.0, 11.0, 8.0],  # partly outside
            [1, -2.0, -1.5, 1.0, 1.0],
            [1, 3.0, 3.0, 3.4, 3.2],  # smaller than a cell
        ]
    )
    got = roi_align(feat, boxes, (4, 4), spatial_scale=1.0, sampling_ratio=ratio, aligned=aligned)
    for k, (b, *box) in enumerate(boxes.tolist()):
        want = brute_force_roi_align(feat[int(b)], box, (4, 4), 1.0, ratio, aligned)
        torch.testing.assert_close(got[k], want, atol=1e-5, rtol=1e-5)


def test_gradients_flow_to_features():
    feat = torch.randn(1, 2, 8, 8, requires_grad=True)
    roi_align(feat, torch.tensor([[0.0, 1.0, 1.0, 6.0, 7.0]]), 4).sum().backward()
    assert feat.grad[0, :, 1:7, 1:6].abs().sum() > 0 and feat.grad[0, :, :, 7].abs().sum() == 0


def test_pooling_2d_vs_row():
    grid = torch.arange(64.0).view(1, 1, 8, 8)  # value = 8 * row + column
    two_d = pool_grid(grid, 4, '2d')  # (1, 16, 1): 2 x 2 blocks
    assert two_d.shape == (1, 16, 1)
    assert two_d[0, 0, 0] == (0 + 1 + 8 + 9) / 4 and two_d[0, 5, 0] == (18 + 19 + 26 + 27) / 4
    row = pool_grid(grid, 4, 'row')  # groups of 4 consecutive raster tokens (half a row here)
    assert row[0, 0, 0] == (0 + 1 + 2 + 3) / 4 and row[0, 1, 0] == (4 + 5 + 6 + 7) / 4
    assert not torch.equal(two_d, row)
    sixteen = torch.randn(2, 5, 16, 16)  # the paper's 16 x 16 CLIP grid: a row per token
    torch.testing.assert_close(pool_grid(sixteen, 4, 'row'), sixteen.mean(3).transpose(1, 2))
    with pytest.raises(ValueError):
        pool_grid(grid, 4, 'rows')
    with pytest.raises(ValueError):
        pool_grid(torch.randn(1, 1, 3, 5), 4, 'row')
