# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""Bad files, round 2 (issue 17, classes 4 and 5): decompression-bomb headers of images and depth
maps, depth maps above ``max_pixels``, 16-bit grey images, and skip mode on a one-record dataset.

Before: a 20000x20000 header in a ~60-byte PNG raised PIL's ``DecompressionBombError`` (no record
id, not skippable); depth maps had no pixel limit (a 12000x12000 16-bit PNG took about 3 GB);
16-bit grey images became white; a one-record dataset in skip mode tried its record 51 times.
"""

from __future__ import annotations

import copy
import os.path as osp
import struct
import tracemalloc
import zlib

import numpy as np
import pytest
from mmengine.registry import init_default_scope
from numpy.lib import format as npy_format
from PIL import Image

from mmrefvlm.datasets.records import validate_record
from mmrefvlm.datasets.transforms import LoadRecordDepth, SampleLoadError

from ..test_datasets.conftest import scene  # noqa: F401  (fixture)
from ..test_datasets.test_dataset_errors import dataset, variant


@pytest.fixture(autouse=True)
def _scope():
    init_default_scope('mmrefvlm')


def png_header(path: str, width: int, height: int, bit_depth: int, color_type: int) -> None:
    """A PNG whose header claims ``width`` x ``height`` with no pixel data (about 60 bytes)."""

    def chunk(tag: bytes, data: bytes) -> bytes:
        crc = struct.pack('>I', zlib.crc32(tag + data) & 0xFFFFFFFF)
        return struct.pack('>I', len(data)) + tag + data + crc

    ihdr = struct.pack('>IIBBBBB', width, height, bit_depth, color_type, 0, 0, 0)
    with open(path, 'wb') as f:
        f.write(b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', ihdr) + chunk(b'IDAT', zlib.compress(b'')))
        f.write(chunk(b'IEND', b''))


def _bomb_image(scene):
    png_header(osp.join(scene['root'], 'bomb.png'), 20000, 20000, 8, 2)
    return variant(
        scene,
        lambda r: r.update(
            image={'path': 'bomb.png', 'width': 20000, 'height': 20000}, instances=[], depth=None
        ),
    )


def _bomb_depth(scene, size=20000):
    png_header(osp.join(scene['root'], 'bomb_d.png'), size, size, 16, 0)
    return variant(scene, lambda r: r['depth'].update(path='bomb_d.png'))


def test_image_bomb_header_is_a_skippable_error_naming_the_record(scene):
    rec = _bomb_image(scene)
    assert osp.getsize(osp.join(scene['root'], 'bomb.png')) < 100
    rec['conversation'][1]['answer'] = 'nothing'
    errors = validate_record(rec, data_root=scene['root'], template_sets={})
    assert [e.field for e in errors] == ['image.path'] and 'pixels' in errors[0].message
    with pytest.raises(SampleLoadError, match=r'record r0: image .*bomb\.png.* max_pixels'):
        dataset(scene, [rec])[0]
    good = copy.deepcopy(scene['record'])
    ds = dataset(scene, [rec, good], skip_bad_samples=True)
    assert ds[0]['data_samples'].metainfo['record_id'] == 'r0' and ds.num_skipped == 1


def test_depth_bomb_header_is_refused_like_an_image(scene):
    rec = _bomb_depth(scene)
    errors = validate_record(rec, data_root=scene['root'], template_sets={})
    assert [e.field for e in errors] == ['depth.path'] and 'pixels' in errors[0].message
    with pytest.raises(SampleLoadError, match=r'record r0: depth .*bomb_d\.png.* max_pixels'):
        dataset(scene, [rec])[0]


@pytest.mark.parametrize('fmt', ['png16', 'npy'])
def test_depth_above_max_pixels_is_refused_from_the_header(scene, tmp_path, fmt):
    """12000 x 12000: under PIL's bomb limit, above ``max_pixels``; refused before decoding."""
    path = str(tmp_path / ('big.png' if fmt == 'png16' else 'big.npy'))
    if fmt == 'png16':
        png_header(path, 12000, 12000, 16, 0)
    else:
        with open(path, 'wb') as f:  # a header claiming 12000 x 12000 uint16, no data
            header = {'descr': '<u2', 'fortran_order': False, 'shape': (12000, 12000)}
            npy_format.write_array_header_1_0(f, header)
    results = dict(id='r7', data_root=str(tmp_path), ori_shape=(12000, 12000))
    results['depth'] = {'path': osp.basename(path), 'scale': 0.001, 'format': fmt}
    tracemalloc.start()
    try:
        with pytest.raises(SampleLoadError, match=r'record r7: depth .*12000x12000.*max_pixels'):
            LoadRecordDepth()(results)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 20 * 2**20, f'{peak / 2**20:.0f} MiB allocated before refusing'
    with pytest.raises(ValueError, match='max_pixels must be positive'):
        LoadRecordDepth(max_pixels=0)


def test_16_bit_grey_image_is_scaled_not_saturated(scene):
    grey = np.full((30, 40), 40000, np.uint16)
    grey[:, :20] = 1000
    Image.fromarray(grey).save(osp.join(scene['root'], 'grey16.png'))
    assert Image.open(osp.join(scene['root'], 'grey16.png')).mode == 'I;16'
    rec = variant(scene, lambda r: r['image'].update(path='grey16.png'))
    assert validate_record(rec, data_root=scene['root'], template_sets={}) == []
    from mmrefvlm.datasets.transforms import LoadRecordImage

    out = LoadRecordImage()(dict(copy.deepcopy(rec), data_root=scene['root']))
    img = out['img']
    assert img.dtype == np.uint8 and img.shape == (30, 40, 3)
    assert (img[:, 20:] == 156).all() and (img[:, :20] == 4).all()  # round(v * 255 / 65535)


def test_one_record_dataset_in_skip_mode_tries_it_once(scene, monkeypatch):
    bad = variant(scene, lambda r: r['image'].update(path='missing.png'))
    ds = dataset(scene, [bad], skip_bad_samples=True)
    calls = []
    original = type(ds).prepare_data
    monkeypatch.setattr(
        type(ds), 'prepare_data', lambda self, i: calls.append(i) or original(self, i)
    )
    with pytest.raises(RuntimeError, match=r'1 consecutive bad samples .*every sample'):
        ds[0]
    assert calls == [0] and ds.num_skipped == 1
    three = dataset(scene, [bad, bad, bad], skip_bad_samples=True, max_consecutive_skips=50)
    with pytest.raises(RuntimeError, match=r'3 consecutive bad samples from index 1 \(every'):
        three[1]
    assert three.num_skipped == 3  # each record once, not 51 tries
