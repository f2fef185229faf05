# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""mmrefvlm.datasets.geometry against pycocotools and numpy references."""

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils

from mmrefvlm.datasets.geometry import (
    check_bbox,
    check_depth_file,
    check_mask,
    check_rle,
    clip_bbox,
    decode_mask,
    encode_mask,
    mask_area,
    mask_bbox,
    rle_counts_from_string,
    xywh_to_xyxy,
)


def test_rle_parser_matches_pycocotools():
    rng = np.random.default_rng(0)
    for _ in range(40):
        h, w = rng.integers(1, 50, 2)
        m = rng.random((h, w)) < rng.random()
        enc = mask_utils.encode(np.asfortranarray(m.astype(np.uint8)))
        runs = rle_counts_from_string(enc['counts'].decode())
        assert sum(runs) == h * w
        assert sum(runs[1::2]) == int(mask_utils.area(enc)) == int(m.sum())
        rle = encode_mask(m)
        assert check_rle(rle, int(h), int(w)) == (None, int(m.sum()))
        assert np.array_equal(decode_mask(rle, int(h), int(w)), m)


def test_malformed_rle_is_rejected_before_pycocotools():
    rle = encode_mask(np.ones((4, 4), bool))
    # the same counts declared for a smaller mask would make pycocotools write past its buffer
    small = {'size': [2, 2], 'counts': rle['counts']}
    err, _ = check_rle(small, 2, 2)
    assert 'runs cover 16 pixels' in err
    with pytest.raises(ValueError, match='runs cover 16 pixels'):
        decode_mask(small, 2, 2)
    assert 'invalid RLE character' in check_rle({'size': [2, 2], 'counts': '0~'})[0]
    assert 'truncated' in check_rle({'size': [2, 2], 'counts': '0o'})[0]
    with pytest.raises(ValueError, match='does not match'):
        decode_mask(rle, 4, 5)


def test_polygons_match_pycocotools():
    polys = [[2.5, 1, 20, 3, 12, 18], [25, 5, 35, 5, 35, 15, 25, 15]]
    ref = mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects(polys, 20, 40))).astype(bool)
    assert np.array_equal(decode_mask(polys, 20, 40), ref)
    assert mask_area(polys, 20, 40) == int(ref.sum())
    ys, xs = np.nonzero(ref)
    assert mask_bbox(polys, 20, 40) == [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]
    assert mask_bbox([[50, 50, 60, 50, 60, 60]], 20, 40) is None
    assert check_mask(polys, 20, 40) is None
    assert 'odd number' in check_mask([[1, 2, 3, 4, 5, 6, 7]], 20, 40)
    with pytest.raises(ValueError, match='at least 3'):
        decode_mask([[1, 1, 5, 5]], 20, 40)  # pycocotools would read 4 numbers as a box


def test_boxes():
    assert check_bbox([0, 0, 40.0005, 30], 40, 30) is None  # float slack
    assert 'outside' in check_bbox([0, 0, 40.01, 30], 40, 30)
    assert 'inverted' in check_bbox([5, 5, 5, 9], 40, 30)
    assert 'finite' in check_bbox([0, 0, float('nan'), 3], 40, 30)
    assert 'finite' in check_bbox([0, 0, True, 3], 40, 30)
    assert xywh_to_xyxy([1, 2, 3, 4]) == [1, 2, 4, 6]
    assert clip_bbox([-3, 2, 50, 9], 40, 30) == [0, 2, 40, 9]
    assert clip_bbox([41, 2, 50, 9], 40, 30) is None
    with pytest.raises(ValueError, match='expects an'):
        encode_mask(np.zeros((2, 2, 2), bool))


def test_depth_files(tmp_path):
    Image.fromarray(np.full((6, 8), 1234, np.uint16)).save(tmp_path / 'd16.png')
    Image.fromarray(np.zeros((6, 8), np.uint8)).save(tmp_path / 'd8.png')
    np.save(tmp_path / 'd.npy', np.ones((6, 8), np.float32))
    np.save(tmp_path / 'd3.npy', np.ones((6, 8, 1), np.float32))
    assert check_depth_file(str(tmp_path / 'd16.png'), 'png16', 8, 6) is None
    assert 'not a 16-bit PNG' in check_depth_file(str(tmp_path / 'd8.png'), 'png16', 8, 6)
    assert check_depth_file(str(tmp_path / 'd.npy'), 'npy', 8, 6) is None
    assert '2-D' in check_depth_file(str(tmp_path / 'd3.npy'), 'npy', 8, 6)
    assert 'depth map is 8x6, the image is 9x6' == check_depth_file(
        str(tmp_path / 'd16.png'), 'png16', 9, 6
    )
    assert 'not found' in check_depth_file(str(tmp_path / 'none.png'), 'png16', 8, 6)
