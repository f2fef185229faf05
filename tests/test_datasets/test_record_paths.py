# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""Record paths resolve inside ``data_root`` (issue 17, class 2).

Before: ``image.path: "../../../../etc/passwd"`` passed the validator and the loader opened it,
and absolute paths were refused by the validator but opened by the loader. Now one function,
``files.resolve_record_path``, decides for both; symbolic links count as their target; the
message is the same whether or not something exists outside the root; a dataset switch
(``allow_outside_data_root``) allows paths outside on purpose.
"""

from __future__ import annotations

import copy
import os
import os.path as osp
import shutil

import pytest

from mmrefvlm.datasets.records import validate_record
from mmrefvlm.datasets.transforms import SampleLoadError

from .test_dataset_errors import dataset


@pytest.fixture
def layout(scene, tmp_path_factory):
    """The scene under ``<base>/root``, a real image outside it, and links inside it."""
    base = tmp_path_factory.mktemp('paths')
    root = base / 'root'
    shutil.copytree(scene['root'], root)
    shutil.copy(root / 'img.png', base / 'outside.png')  # a real file next to the root
    os.symlink(base / 'outside.png', root / 'link_out.png')  # link leaving the root
    os.symlink(base / 'nowhere.png', root / 'dangling_out.png')  # link to nothing, outside
    (root / 'sub').mkdir()
    os.symlink(root / 'img.png', root / 'sub' / 'link_in.png')  # link staying inside
    return dict(scene, root=str(root), base=str(base))


def _record(layout, **image):
    rec = copy.deepcopy(layout['record'])
    rec['image'].update(image)
    return rec


def _refusal(layout, path, **kw):
    """(validator message, loader message) for image.path = ``path``."""
    rec = _record(layout, path=path)
    errors = validate_record(rec, data_root=layout['root'], template_sets={}, **kw)
    with pytest.raises(SampleLoadError) as info:
        dataset(dict(layout), [rec], **kw)[0]
    return [str(e) for e in errors if e.field == 'image.path'], str(info.value)


OUTSIDE = ['../outside.png', '../../../../../../etc/passwd', 'sub/../../outside.png']


@pytest.mark.parametrize('path', OUTSIDE + ['link_out.png', 'dangling_out.png'])
def test_paths_leaving_the_root_are_refused_by_validator_and_loader(layout, path):
    validator, loader = _refusal(layout, path)
    assert len(validator) == 1 and 'outside the data root' in validator[0]
    assert loader.startswith('record r0: image.path') and 'outside the data root' in loader


def test_absolute_paths_are_refused_by_both(layout):
    validator, loader = _refusal(layout, osp.join(layout['root'], 'img.png'))
    assert 'absolute' in validator[0] and 'absolute' in loader and 'record r0' in loader


def test_message_does_not_reveal_whether_an_outside_file_exists(layout):
    exists = _refusal(layout, '../outside.png')
    missing = _refusal(layout, '../missing.png')
    link_exists, link_missing = (
        _refusal(layout, 'link_out.png'),
        _refusal(layout, 'dangling_out.png'),
    )
    for (a_val, a_load), (b_val, b_load), (pa, pb) in (
        (exists, missing, ('../outside.png', '../missing.png')),
        (link_exists, link_missing, ('link_out.png', 'dangling_out.png')),
    ):
        assert a_val[0].replace(pa, 'P') == b_val[0].replace(pb, 'P')
        assert a_load.replace(pa, 'P') == b_load.replace(pb, 'P')
        assert 'not found' not in a_load + b_load and 'does not exist' not in a_load + b_load


@pytest.mark.parametrize(
    'inside,outside',
    [('sub/../img.png', 'sub/../../outside.png'), ('sub/link_in.png', 'link_out.png')],
)
def test_links_and_dots_count_as_where_they_lead(layout, inside, outside):
    rec = _record(layout, path=inside)
    assert validate_record(rec, data_root=layout['root'], template_sets={}) == []
    out = dataset(dict(layout), [rec])[0]
    assert out['data_samples'].metainfo['record_id'] == 'r0'
    validator, loader = _refusal(layout, outside)
    assert validator and 'outside the data root' in loader


def test_switch_allows_outside_paths_on_purpose(layout):
    for path in ('../outside.png', osp.join(layout['base'], 'outside.png'), 'link_out.png'):
        rec = _record(layout, path=path)
        errors = validate_record(
            rec, data_root=layout['root'], template_sets={}, allow_outside_data_root=True
        )
        assert errors == [], errors
        ds = dataset(dict(layout), [rec], allow_outside_data_root=True)
        assert ds[0]['data_samples'].metainfo['record_id'] == 'r0'


def test_depth_paths_follow_the_same_rule(layout):
    rec = copy.deepcopy(layout['record'])
    shutil.copy(osp.join(layout['root'], 'depth.png'), osp.join(layout['base'], 'd.png'))
    rec['depth']['path'] = '../d.png'
    errors = validate_record(rec, data_root=layout['root'], template_sets={})
    assert [e.field for e in errors] == ['depth.path']
    with pytest.raises(SampleLoadError, match='record r0: depth.path .* outside the data root'):
        dataset(dict(layout), [rec])[0]


def test_validator_without_data_root_still_refuses_escaping_strings(layout):
    rec = _record(layout, path='../../etc/passwd')
    errors = validate_record(rec, template_sets={})
    assert [e.field for e in errors] == ['image.path']
    assert 'outside the data root' in errors[0].message


def test_cli_switch(layout, tmp_path, capsys):
    from .test_records import _cli, _write

    rec = _record(layout, path='../outside.png')
    path = _write(tmp_path / 'r.jsonl', [rec])
    cli = _cli()
    assert cli.main([path, '--data-root', layout['root']]) == 1
    assert 'outside the data root' in capsys.readouterr().out
    assert cli.main([path, '--data-root', layout['root'], '--allow-outside-data-root']) == 0
