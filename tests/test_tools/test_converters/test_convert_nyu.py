# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""NYU-Depth-v2 file list -> depth records, on tests/data/converters/nyu."""

import os.path as osp

from PIL import Image

from mmrefvlm.datasets.records import validate_record


def test_nyu_depth(run_converter, fixtures, template_dir):
    root = osp.join(fixtures, 'nyu')
    records, skipped, _ = run_converter(
        'nyu_depth',
        osp.join(root, 'nyudepthv2_test_files_with_gt.txt'),
        '--rgb-root',
        root,
        '--data-root',
        fixtures,
        '--split',
        'test',
    )
    assert sorted(records) == ['nyu-test-bathroom_rgb_00045', 'nyu-test-office_rgb_00007']
    assert skipped == {
        'line without ground-truth depth': 1,
        'missing RGB file': 1,
        'missing depth file, not a 16-bit PNG, or size mismatch': 1,
    }
    rec = records['nyu-test-office_rgb_00007']  # listed with a leading '/', as in BTS lists
    with Image.open(osp.join(root, 'office', 'rgb_00007.jpg')) as im:
        assert (rec['image']['width'], rec['image']['height']) == im.size
    assert rec['image']['path'] == 'nyu/office/rgb_00007.jpg'
    assert rec['depth'] == {
        'path': 'nyu/office/sync_depth_00007.png',
        'scale': 0.001,
        'format': 'png16',
    }
    assert rec['instances'] == [] and rec['meta']['focal'] == 518.8579
    assert rec['meta']['line'] == 5
    assert rec['conversation'][1]['answer'] == [
        {'phrase': 'depth map', 'groups': [{'units': ['depth'], 'n': 1, 'targets': [None]}]}
    ]
    # with the data root, the validator also opens the files: 16-bit PNG of the image size
    assert validate_record(rec, data_root=fixtures, template_sets={}) == []


def test_nyu_depth_root_and_duplicates(run_converter, fixtures, tmp_path):
    root = osp.join(fixtures, 'nyu')
    lst = tmp_path / 'list.txt'
    lst.write_text(
        'rgb_00045.jpg sync_depth_00045.png 518.8579\n\n'
        'rgb_00045.jpg sync_depth_00045.png 518.8579\nbroken\n'
    )
    records, skipped, _ = run_converter(
        'nyu_depth',
        str(lst),
        '--rgb-root',
        osp.join(root, 'bathroom'),
        '--depth-root',
        osp.join(root, 'bathroom'),
        '--data-root',
        root,
    )
    assert list(records) == ['nyu-list-rgb_00045']
    assert records['nyu-list-rgb_00045']['depth']['path'] == 'bathroom/sync_depth_00045.png'
    assert skipped == {'duplicate list line': 1, 'malformed list line': 1}
