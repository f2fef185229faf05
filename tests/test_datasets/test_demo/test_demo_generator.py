# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""Demo dataset files: layout, determinism, validity against docs/data_format.md, depth maps."""

import filecmp
import json
import os
import os.path as osp

import numpy as np
import pytest
from PIL import Image

from mmrefvlm.datasets.demo import DEMO_TASKS, ensure_demo_dataset, generate_demo_dataset
from mmrefvlm.datasets.records import load_template_sets, validate_file

NUM_TRAIN, NUM_VAL = 24, 8


def _all_files(root):
    return sorted(osp.relpath(osp.join(d, f), root) for d, _, fs in os.walk(root) for f in fs)


def _read(root, split, task):
    with open(osp.join(root, 'annotations', f'{split}_{task}.jsonl'), encoding='utf-8') as f:
        return [json.loads(line) for line in f]


@pytest.fixture(scope='module')
def demo_root(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('demo'))
    generate_demo_dataset(root, seed=3, num_train_images=NUM_TRAIN, num_val_images=NUM_VAL)
    return root


def test_layout_and_metainfo(demo_root):
    files = _all_files(demo_root)
    for split, num in (('train', NUM_TRAIN), ('val', NUM_VAL)):
        assert sum(f.startswith(f'images/{split}/') for f in files) == num
        assert sum(f.startswith(f'depth/{split}/') for f in files) == num
        for task in DEMO_TASKS:
            assert len(_read(demo_root, split, task)) == num
    with open(osp.join(demo_root, 'metainfo.json')) as f:
        meta = json.load(f)
    assert meta['seed'] == 3 and meta['tasks'] == list(DEMO_TASKS)
    assert meta['classes'] == ['circle', 'square', 'triangle', 'diamond', 'cross']
    assert meta['keypoint_names'] == ['centre', 'top', 'right', 'bottom', 'left']
    n_inst = sum(len(r['instances']) for r in _read(demo_root, 'train', 'caption'))
    assert meta['splits']['train']['num_instances'] == n_inst
    sizes = {
        Image.open(osp.join(demo_root, 'images', 'train', f'{i:06d}.png')).size
        for i in range(NUM_TRAIN)
    }
    assert sizes <= {(64, 64), (64, 48), (48, 64)} and len(sizes) >= 2


@pytest.mark.parametrize('split', ['train', 'val'])
def test_records_validate(demo_root, split):
    sets = load_template_sets()
    for task in DEMO_TASKS:
        report = validate_file(
            osp.join(demo_root, 'annotations', f'{split}_{task}.jsonl'),
            data_root=demo_root,
            template_sets=sets,
            known_units=('box', 'mask', 'keypoint', 'depth'),
            max_errors=5,
        )
        assert report.num_errors == 0, [str(e) for e in report.errors]


def test_images_depth_and_instances_agree(demo_root):
    from pycocotools import mask as mask_utils

    for rec in _read(demo_root, 'val', 'depth'):
        img = np.asarray(Image.open(osp.join(demo_root, rec['image']['path'])))
        depth_img = Image.open(osp.join(demo_root, rec['depth']['path']))
        assert depth_img.mode == 'I;16' and rec['depth']['scale'] == 0.001
        depth = np.asarray(depth_img).astype(np.int64)
        h, w = img.shape[:2]
        assert depth.shape == (h, w) and (rec['image']['width'], rec['image']['height']) == (w, h)
        union = np.zeros((h, w), bool)
        for inst in rec['instances']:
            m = mask_utils.decode(inst['mask']).astype(bool)
            ys, xs = np.nonzero(m)
            assert inst['bbox'] == [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]
            vals = np.unique(depth[m])
            assert len(vals) == 1 and 1000 <= vals[0] <= 2500  # constant, 1-2.5 m
            k = np.asarray(inst['keypoints']).reshape(5, 3)
            # centre keypoint on an object pixel; extremes on the box edges
            assert m[int(k[0, 1]), int(k[0, 0])]
            assert (k[1, 1], k[2, 0], k[3, 1], k[4, 0]) == (
                inst['bbox'][1],
                inst['bbox'][2],
                inst['bbox'][3],
                inst['bbox'][0],
            )
            union |= m
        # background: 6 m at the top row to 3 m at the bottom row, linear
        expected = np.rint(np.linspace(6000, 3000, h))[:, None].repeat(w, 1)
        assert (depth[~union] == expected[~union]).all()
        assert depth.min() > 0


def test_byte_identical_and_seed_dependent(demo_root, tmp_path, monkeypatch):
    # again, by two processes on chunks of 5 images: the same bytes as one process
    from mmrefvlm.datasets.demo import generator

    monkeypatch.setattr(generator, 'CHUNK_IMAGES', 5)
    again = str(tmp_path / 'again')
    generate_demo_dataset(
        again, seed=3, num_train_images=NUM_TRAIN, num_val_images=NUM_VAL, workers=2
    )
    files = _all_files(demo_root)
    assert files == _all_files(again)
    match, mismatch, errors = filecmp.cmpfiles(demo_root, again, files, shallow=False)
    assert not mismatch and not errors and len(match) == len(files)
    other = str(tmp_path / 'other')
    generate_demo_dataset(other, seed=4, num_train_images=4, num_val_images=0, tasks=['rec'])
    assert not filecmp.cmp(
        osp.join(demo_root, 'images/train/000000.png'),
        osp.join(other, 'images/train/000000.png'),
        shallow=False,
    )


def test_prefix_and_task_subset_stable(demo_root, tmp_path):
    """Image i and its samples do not depend on the number of images or on the task subset."""
    small = str(tmp_path / 'small')
    generate_demo_dataset(
        small, seed=3, num_train_images=5, num_val_images=2, tasks=['gres', 'ig_mask']
    )
    for split, n in (('train', 5), ('val', 2)):
        for task in ('gres', 'ig_mask'):
            assert _read(small, split, task) == _read(demo_root, split, task)[:n]
    assert not osp.exists(osp.join(small, 'annotations', 'train_rec.jsonl'))
    assert not osp.exists(osp.join(small, 'depth'))


def test_ensure_demo_dataset_reuses(tmp_path):
    root = str(tmp_path / 'd')
    meta = ensure_demo_dataset(root, num_train_images=3, num_val_images=1, tasks=['rec'])
    stamp = os.stat(osp.join(root, 'images/train/000000.png')).st_mtime_ns
    assert ensure_demo_dataset(root, num_train_images=3, num_val_images=1, tasks=['rec']) == meta
    assert os.stat(osp.join(root, 'images/train/000000.png')).st_mtime_ns == stamp
    meta2 = ensure_demo_dataset(root, num_train_images=4, num_val_images=1, tasks=['rec'])
    assert meta2['splits']['train']['num_images'] == 4


@pytest.mark.parametrize(
    'kwargs, msg',
    [
        (dict(seed=-1), 'seed'),
        (dict(num_train_images=-2), 'train'),
        (dict(tasks=['rec', 'nope']), 'tasks'),
        (dict(tasks=[]), 'tasks'),
        (dict(image_sizes=[(16, 64)]), 'image size'),
        (dict(workers=0), 'workers'),
    ],
)
def test_bad_arguments(tmp_path, kwargs, msg):
    with pytest.raises(ValueError, match=msg):
        generate_demo_dataset(str(tmp_path), **kwargs)
