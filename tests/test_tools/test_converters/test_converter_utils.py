# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""Shared converter pieces: relative paths, the validating writer, COCO mask normalisation."""

from collections import Counter

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from mmrefvlm.datasets.geometry import decode_mask


def _record(rid='a', bbox=(1, 1, 5, 5)):
    return {
        'id': rid,
        'task': 'rec',
        'image': {'path': 'x.jpg', 'width': 8, 'height': 8},
        'instances': [{'bbox': list(bbox)}],
        'conversation': [
            {'role': 'user', 'template': 'rec', 'slots': {'expr': 'it'}},
            {
                'role': 'assistant',
                'answer': [
                    {'phrase': 'it', 'groups': [{'units': ['box'], 'n': 1, 'targets': [0]}]}
                ],
            },
        ],
    }


def test_relative_path(converter, tmp_path):
    utils = converter('converter_utils')
    root = tmp_path / 'data'
    assert utils.relative_path(str(root / 'coco' / 'val'), 'a.jpg', str(root)) == 'coco/val/a.jpg'
    assert utils.relative_path(str(root), 'sub/b.png', str(root)) == 'sub/b.png'
    with pytest.raises(ValueError, match='not inside --data-root'):
        utils.relative_path(str(tmp_path / 'elsewhere'), 'a.jpg', str(root))


def test_record_writer_rejects_invalid_and_duplicates(converter, tmp_path, template_dir):
    utils = converter('converter_utils')
    with utils.RecordWriter(str(tmp_path / 'out.jsonl'), template_dir=template_dir) as writer:
        writer.write(_record('a'))
        with pytest.raises(ValueError, match='duplicate record id'):
            writer.write(_record('a'))
        with pytest.raises(ValueError, match=r'instances\[0\]\.bbox'):
            writer.write(_record('b', bbox=(1, 1, 9, 5)))  # x2 beyond the 8 px width
    assert writer.tasks == Counter(rec=1)
    assert (tmp_path / 'out.jsonl').read_text().count('\n') == 1


def test_coco_mask_normalisation(converter):
    utils = converter('converter_utils')
    m = np.zeros((6, 7), bool)
    m[1:4, 2:6] = True
    flat = m.ravel(order='F').astype(int)
    counts = np.diff(np.r_[0, np.flatnonzero(np.diff(flat)) + 1, flat.size]).tolist()
    uncompressed = {'size': [6, 7], 'counts': counts}
    rle = utils.coco_mask(uncompressed, 7, 6)
    assert isinstance(rle['counts'], str)
    assert np.array_equal(decode_mask(rle, 6, 7), m)
    ref = mask_utils.decode(mask_utils.frPyObjects(uncompressed, 6, 7)).astype(bool)
    assert np.array_equal(ref, m)
    # degenerate polygons are dropped, a wrong-size RLE and an empty mask are unusable
    assert utils.coco_mask([[1, 1, 3, 3], [0, 0, 4, 0, 4, 4]], 7, 6) == [[0, 0, 4, 0, 4, 4]]
    assert utils.coco_mask([[1, 1, 3, 3]], 7, 6) is None
    assert utils.coco_mask(rle, 8, 6) is None
    assert utils.coco_mask({'size': [6, 7], 'counts': [42]}, 7, 6) is None


def test_coco_instance_skips(converter):
    utils = converter('converter_utils')
    img = {'width': 10, 'height': 10}
    skipped = Counter()
    inst = utils.coco_instance(
        {'id': 5, 'bbox': [8, 8, 4, 4], 'segmentation': []}, img, 'cat', skipped
    )
    assert inst == {'bbox': [8.0, 8.0, 10.0, 10.0], 'category': 'cat', 'source_id': 5}
    assert utils.coco_instance({'id': 6, 'bbox': [12, 0, 3, 3]}, img, 'cat', skipped) is None
    assert (
        utils.coco_instance(
            {'id': 7, 'bbox': [1, 1, 3, 3], 'segmentation': []}, img, 'cat', skipped, need_mask=True
        )
        is None
    )
    assert skipped == {
        'annotation with an empty or out-of-image bbox': 1,
        'annotation without a usable mask': 1,
    }


def test_outputs_match_packaged_templates(converter, fixtures, tmp_path):
    """Converter records also validate against the template sets shipped in the package."""
    import os.path as osp

    from mmrefvlm.datasets.records import load_template_sets, validate_file

    sets = load_template_sets()
    needed = {
        'ovd',
        'ovs',
        'rec',
        'res',
        'gres',
        'keypoint',
        'gcg_box',
        'gcg_mask',
        'ig_box',
        'ig_mask',
        'depth',
    }
    if not needed <= set(sets):
        pytest.skip(f'packaged template sets missing: {sorted(needed - set(sets))}')
    f = lambda *p: osp.join(fixtures, *p)  # noqa: E731
    runs = {
        'coco_instances': [f('coco', 'instances_val2017.json'), '--tasks', 'ovd', 'ovs', 'rec'],
        'coco_keypoints': [f('coco', 'person_keypoints_val2017.json')],
        'refcoco': [f('refcoco', 'refs(unc).p'), f('refcoco', 'instances.json')],
        'grefcoco': [f('grefcoco', 'grefs(unc).json'), f('grefcoco', 'instances.json')],
        'flickr30k_entities': [f('flickr30k')],
        'grandf_gcg': [f('grandf', 'GranDf_HA_GCG_train.json')],
        'coco_interactive': [f('coco_interactive', 'coco_interactive_val_psalm.json')],
        'nyu_depth': [f('nyu', 'nyudepthv2_test_files_with_gt.txt'), '--rgb-root', f('nyu')],
    }
    for name, argv in runs.items():
        out = str(tmp_path / f'{name}.jsonl')
        converter(name).main([*argv, '--data-root', fixtures, '--out', out])
        report = validate_file(out, template_sets=sets)
        assert report.num_records > 0 and report.num_errors == 0, (name, report.errors)
