# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""Demo scenes: rasterised shapes, box/keypoint geometry, colours and depth."""

import numpy as np
import pytest

from mmrefvlm.datasets.demo import (
    COLOURS,
    SHAPES,
    SIZES,
    encode_rle,
    mask_geometry,
    sample_scene,
    shape_mask,
)
from mmrefvlm.datasets.demo.scene import BACKGROUND_DEPTH_MM, OBJECT_DEPTH_MM


def test_shape_mask_against_analytic_shapes():
    h, w, x0, y0, e = 40, 50, 7, 5, 21
    yy, xx = np.mgrid[0:h, 0:w]
    cx, cy = x0 + (e - 1) / 2, y0 + (e - 1) / 2
    square = shape_mask('square', h, w, x0, y0, e)
    ref = (xx >= x0) & (xx < x0 + e) & (yy >= y0) & (yy < y0 + e)
    assert (square == ref).all()
    # Circle / diamond: compare with the analytic region away from the boundary (PIL rounding
    # only differs within about a pixel of the edge).
    r = (e - 1) / 2
    dist = np.hypot(xx - cx, yy - cy)
    circle = shape_mask('circle', h, w, x0, y0, e)
    assert circle[dist < r - 1].all() and not circle[dist > r + 1].any()
    l1 = np.abs(xx - cx) + np.abs(yy - cy)
    diamond = shape_mask('diamond', h, w, x0, y0, e)
    assert diamond[l1 < r - 1].all() and not diamond[l1 > r + 1].any()
    for shape in SHAPES:
        m = shape_mask(shape, h, w, x0, y0, e)
        ys, xs = np.nonzero(m)
        # Every shape spans its bounding square (give or take the triangle apex rounding).
        assert xs.min() == x0 and xs.max() == x0 + e - 1 and ys.max() == y0 + e - 1
        assert ys.min() == y0
    with pytest.raises(ValueError, match='unknown shape'):
        shape_mask('hexagon', h, w, x0, y0, e)


def test_mask_geometry_brute_force():
    rng = np.random.default_rng(0)
    for _ in range(20):
        mask = rng.random((17, 23)) < 0.2
        if not mask.any():
            continue
        bbox, kpts = mask_geometry(mask)
        cols = np.flatnonzero(mask.any(0))
        rows = np.flatnonzero(mask.any(1))
        assert bbox == (cols[0], rows[0], cols[-1] + 1, rows[-1] + 1)
        k = np.asarray(kpts).reshape(5, 3)
        assert (k[:, 2] == 2).all()
        # centre = centroid of pixel centres
        ys, xs = np.nonzero(mask)
        np.testing.assert_allclose(k[0, :2], [xs.mean() + 0.5, ys.mean() + 0.5], atol=0.006)
        # extreme points on the box edges, on an object pixel row / column
        assert k[1, 1] == bbox[1] and k[3, 1] == bbox[3]
        assert k[2, 0] == bbox[2] and k[4, 0] == bbox[0]
        top_row = np.flatnonzero(mask[rows[0]])
        assert k[1, 0] == (top_row[0] + top_row[-1] + 1) / 2
        left_col = np.flatnonzero(mask[:, cols[0]])
        assert k[4, 1] == (left_col[0] + left_col[-1] + 1) / 2
    with pytest.raises(ValueError):
        mask_geometry(np.zeros((4, 4), bool))


@pytest.mark.parametrize('size', [(64, 64), (64, 48), (48, 64)])
def test_sample_scene_invariants(size):
    from pycocotools import mask as mask_utils

    width, height = size
    top, bottom = BACKGROUND_DEPTH_MM
    plane = np.rint(np.linspace(top, bottom, height))[:, None]
    for seed in range(25):
        scene = sample_scene(np.random.default_rng(seed), width, height)
        assert scene.image.shape == (height, width, 3) and scene.image.dtype == np.uint8
        assert scene.depth_mm.dtype == np.uint16
        assert 1 <= len(scene.objects) <= 4
        pairs = [(o.colour, o.shape) for o in scene.objects]
        assert len(set(pairs)) == len(pairs)
        union = np.zeros((height, width), int)
        for o in scene.objects:
            union += o.mask
            x1, y1, x2, y2 = o.bbox
            assert 0 <= x1 < x2 <= width and 0 <= y1 < y2 <= height
            assert min(x2 - x1, y2 - y1) >= 10
            lo, hi = SIZES[o.size]
            assert lo - 1 <= max(x2 - x1, y2 - y1) <= hi
            # RLE round trip through pycocotools
            assert (mask_utils.decode(encode_rle(o.mask)).astype(bool) == o.mask).all()
            # painted in (close to) its nominal colour, nearer than any other demo colour
            mean = scene.image[o.mask].reshape(-1, 3).mean(0)
            dists = {c: np.linalg.norm(mean - np.array(v)) for c, v in COLOURS.items()}
            assert min(dists, key=dists.get) == o.colour and dists[o.colour] < 25
            # constant object depth in the size's range
            d = scene.depth_mm[o.mask]
            assert (d == o.depth_mm).all()
            assert OBJECT_DEPTH_MM[o.size][0] <= o.depth_mm <= OBJECT_DEPTH_MM[o.size][1]
        assert union.max() <= 1  # no overlap
        bg = union == 0
        assert (scene.depth_mm[bg] == np.broadcast_to(plane, (height, width))[bg]).all()
        # boxes do not touch: at least one free pixel between any two
        for i, a in enumerate(scene.objects):
            for b in scene.objects[i + 1 :]:
                assert (
                    a.bbox[2] < b.bbox[0]
                    or b.bbox[2] < a.bbox[0]
                    or a.bbox[3] < b.bbox[1]
                    or b.bbox[3] < a.bbox[1]
                )


def test_sample_scene_deterministic_and_rejects_tiny():
    a = sample_scene(np.random.default_rng(5), 64, 48)
    b = sample_scene(np.random.default_rng(5), 64, 48)
    assert (a.image == b.image).all() and (a.depth_mm == b.depth_mm).all()
    assert [o.bbox for o in a.objects] == [o.bbox for o in b.objects]
    with pytest.raises(ValueError, match='at least 32'):
        sample_scene(np.random.default_rng(0), 16, 64)
