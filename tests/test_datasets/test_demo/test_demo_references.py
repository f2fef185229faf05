# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""The opt-in reference tasks of the demo generator (exemplar images, object sounds)."""

import filecmp
import json
import os
import os.path as osp

import numpy as np
import pytest
from PIL import Image

from mmrefvlm.datasets.demo import (
    ALL_DEMO_TASKS,
    COLOURS,
    DEMO_TASKS,
    REFERENCE_TASKS,
    ensure_demo_dataset,
    generate_demo_dataset,
    read_wav,
)
from mmrefvlm.datasets.demo.references import COLOUR_PARTIAL_RATIO, SHAPE_PITCH_HZ
from mmrefvlm.datasets.records import load_template_sets, validate_file

ARGS = dict(seed=5, num_train_images=12, num_val_images=4)


def _files(root):
    return sorted(osp.relpath(osp.join(d, f), root) for d, _, fs in os.walk(root) for f in fs)


def _read(root, split, task):
    with open(osp.join(root, 'annotations', f'{split}_{task}.jsonl'), encoding='utf-8') as f:
        return [json.loads(line) for line in f]


@pytest.fixture(scope='module')
def roots(tmp_path_factory):
    full = str(tmp_path_factory.mktemp('full'))
    base = str(tmp_path_factory.mktemp('base'))
    generate_demo_dataset(full, tasks=ALL_DEMO_TASKS, **ARGS)
    generate_demo_dataset(base, **ARGS)
    return full, base


def test_default_tasks_unchanged_by_opt_in_tasks(roots):
    """Prefix stability: adding the reference tasks changes no file of the default tasks."""
    full, base = roots
    assert REFERENCE_TASKS == ALL_DEMO_TASKS[len(DEMO_TASKS) :]
    base_files = [f for f in _files(base) if f != 'metainfo.json']
    assert not any(f.startswith('references/') for f in base_files)
    _, mismatch, errors = filecmp.cmpfiles(base, full, base_files, shallow=False)
    assert not mismatch and not errors
    extra = set(_files(full)) - set(base_files) - {'metainfo.json'}
    assert {f.split('/')[0] for f in extra} == {'references', 'annotations'}


def test_deterministic(roots, tmp_path):
    full, _ = roots
    again = str(tmp_path / 'again')
    generate_demo_dataset(again, tasks=ALL_DEMO_TASKS, **ARGS)
    files = _files(full)
    assert files == _files(again)
    _, mismatch, errors = filecmp.cmpfiles(full, again, files, shallow=False)
    assert not mismatch and not errors


@pytest.mark.parametrize('split', ['train', 'val'])
def test_reference_records_validate(roots, split):
    full, _ = roots
    for task in REFERENCE_TASKS:
        report = validate_file(
            osp.join(full, 'annotations', f'{split}_{task}.jsonl'),
            data_root=full,
            template_sets=load_template_sets(),
            known_units=('mask',),
        )
        assert report.num_errors == 0, [str(e) for e in report.errors]
    bad = dict(_read(full, split, 'image_ref_seg')[0])
    bad['references'] = [dict(bad['references'][0], box=[0, 0, 500, 5], path='/abs.png')]
    path = osp.join(full, 'bad.jsonl')
    with open(path, 'w') as f:
        f.write(json.dumps(bad) + '\n')
    fields = {e.field for e in validate_file(path, data_root=full).errors}
    assert {'references[0].path', 'references[0].box'} <= fields
    os.remove(path)


def _peaks(samples, rate, k=2):
    spec = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    freqs = np.fft.rfftfreq(len(samples), 1 / rate)
    peaks = []
    for _ in range(k):
        i = int(spec.argmax())
        peaks.append(freqs[i])
        spec[max(i - 20, 0) : i + 20] = 0  # suppress the peak's neighbourhood
    return sorted(peaks)


def test_sounds_encode_colour_and_shape(roots):
    full, _ = roots
    for rec in _read(full, 'train', 'audio_ref_seg'):
        ref = rec['references'][0]
        colour, shape, _ = rec['meta']['attributes'][ref['instance']]
        samples, rate = read_wav(osp.join(full, ref['path']))
        assert rate == ref['sample_rate'] and len(samples) == ref['num_samples']
        base = SHAPE_PITCH_HZ[shape]
        want = sorted([base, base * COLOUR_PARTIAL_RATIO[colour]])
        assert _peaks(samples, rate) == pytest.approx(want, rel=0.035)
        assert rec['conversation'][1]['answer'][0]['phrase'] == f'the {colour} {shape}'
        assert rec['conversation'][1]['answer'][0]['groups'][0]['targets'] == [ref['instance']]


def test_exemplars_show_the_target(roots):
    full, _ = roots
    for rec in _read(full, 'val', 'image_ref_seg'):
        ref = rec['references'][0]
        colour, _, _ = rec['meta']['attributes'][ref['instance']]
        img = np.asarray(Image.open(osp.join(full, ref['path'])).convert('RGB')).astype(float)
        assert img.shape == (ref['height'], ref['width'], 3)
        x1, y1, x2, y2 = (int(v) for v in ref['box'])
        crop = img[y1:y2, x1:x2].reshape(-1, 3)
        near = np.abs(crop - np.array(COLOURS[colour])).max(1) <= 13
        assert near.mean() > 0.4  # the object fills a good part of its own box


def test_ensure_accepts_a_superset(roots):
    full, _ = roots
    stamp = os.path.getmtime(osp.join(full, 'metainfo.json'))
    meta = ensure_demo_dataset(full, **ARGS)  # default tasks: served by the superset
    assert meta['tasks'] == list(ALL_DEMO_TASKS)
    assert os.path.getmtime(osp.join(full, 'metainfo.json')) == stamp
