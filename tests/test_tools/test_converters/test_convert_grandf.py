# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""GranD-f / GLaMM GCG -> gcg_mask, both source layouts, on tests/data/converters/grandf."""

import json
import os.path as osp

import numpy as np
from pycocotools import mask as mask_utils


def _decode(rle):
    return mask_utils.decode({'size': rle['size'], 'counts': rle['counts'].encode()}).astype(bool)


def _group(phrase, targets):
    return {
        'phrase': phrase,
        'groups': [{'units': ['mask'], 'n': len(targets), 'targets': targets}],
    }


def test_grandf_groundings_layout(run_converter, fixtures):
    ann = osp.join(fixtures, 'grandf', 'GranDf_HA_GCG_train.json')
    records, skipped, _ = run_converter(
        'grandf_gcg',
        ann,
        '--data-root',
        fixtures,
        '--image-dir',
        osp.join(fixtures, 'grandf', 'images'),
    )
    assert sorted(records) == ['GranDf_HA_GCG_train-0-sa_10001', 'GranDf_HA_GCG_train-1-sa_10002']
    assert skipped == {
        'caption without groundings': 1,
        'span relocated by searching the phrase': 1,
        'phrase with an empty or malformed mask': 1,
    }
    with open(ann) as f:
        source = json.load(f)

    r0 = records['GranDf_HA_GCG_train-0-sa_10001']
    assert r0['image'] == {'path': 'grandf/images/sa_10001.jpg', 'width': 32, 'height': 24}
    # "the beach" has a wrong span [90, 99]: found at 23 by searching the caption
    assert r0['conversation'][1]['answer'] == [
        _group('A man', [0]),
        ' rides ',
        _group('a horse', [1]),
        ' on ',
        _group('the beach', [2]),
        '.',
    ]
    # the two RLE masks of "A man" are merged into one target (as GLaMM does)
    parts = [_decode(r) for r in source[0]['groundings']['A man']['rle_masks']]
    merged = _decode(r0['instances'][0]['mask'])
    assert np.array_equal(merged, parts[0] | parts[1])
    ys, xs = np.nonzero(merged)
    assert r0['instances'][0]['bbox'] == [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]
    assert np.array_equal(
        _decode(r0['instances'][2]['mask']),
        _decode(source[0]['groundings']['the beach']['rle_masks'][0]),
    )

    # quotes around the caption are stripped and the character offsets shifted with them;
    # "a bench" has an empty mask and stays plain text
    r1 = records['GranDf_HA_GCG_train-1-sa_10002']
    assert r1['conversation'][1]['answer'] == [_group('Two dogs', [0]), ' play near a bench.']


def test_grandf_coco_layout(run_converter, fixtures):
    ann = osp.join(fixtures, 'grandf', 'flickr_mergedGT_GCG_train.json')
    records, skipped, _ = run_converter('grandf_gcg', ann, '--data-root', fixtures)
    assert list(records) == ['flickr_mergedGT_GCG_train-5']
    assert not skipped
    rec = records['flickr_mergedGT_GCG_train-5']
    # two annotations share the span of "Two men" (given as [0, 8] with a trailing space)
    assert rec['conversation'][1]['answer'] == [
        _group('Two men', [0, 1]),
        ' stand by a ',
        _group('car', [2]),
        '.',
    ]
    assert [i['bbox'] for i in rec['instances']] == [[1, 2, 6, 12], [6, 2, 9, 12], [10, 8, 20, 16]]
    with open(ann) as f:
        source = json.load(f)['annotations']
    for inst, src in zip(rec['instances'], source, strict=True):
        assert inst['mask'] == src['sam_mask']
