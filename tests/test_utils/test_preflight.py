# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""Preflight on fake asset folders: everything present passes; each item removed alone is the one
reported, with its hint; hub ids follow HF_HUB_OFFLINE and the HF cache."""

import os
import shutil

import pytest
from mmengine.config import ConfigDict

from mmrefvlm.utils.preflight import PreflightError, check_assets, run_preflight

FILES = ('train_rec.jsonl', 'train_res.jsonl')


def _model_dir(path, *, weights=True):
    os.makedirs(path)
    with open(os.path.join(path, 'config.json'), 'w') as f:
        f.write('{}')
    if weights:
        open(os.path.join(path, 'model.safetensors'), 'wb').close()
    open(os.path.join(path, 'tokenizer.json'), 'w').close()


@pytest.fixture
def assets(tmp_path, monkeypatch):
    """A config whose every asset exists under tmp_path (the working directory)."""
    monkeypatch.chdir(tmp_path)
    for name in ('vicuna-7b-v1.5', 'clip-vit-large-patch14-336', 'clip-convnext-large-512-hf'):
        _model_dir(f'checkpoints/{name}')
    os.makedirs('data/vt_instruct/refcoco')
    for f in FILES:
        open(f'data/vt_instruct/refcoco/{f}', 'w').close()
    os.makedirs('work_dirs/stage1')
    open('work_dirs/stage1/iter_10.pth', 'wb').close()
    tok = dict(source='checkpoints/vicuna-7b-v1.5')
    pipeline = [dict(type='FormatConversation', tokenizer=tok)]
    datasets = [
        dict(data_root='data/vt_instruct', ann_file=f'refcoco/{f}', pipeline=pipeline)
        for f in FILES
    ]
    cfg = ConfigDict(
        model=dict(
            tokenizer=tok,
            llm=dict(name_or_path='checkpoints/vicuna-7b-v1.5'),
            vision_encoder=dict(name_or_path='checkpoints/clip-vit-large-patch14-336'),
            pyramid_encoder=dict(name_or_path='checkpoints/clip-convnext-large-512-hf'),
        ),
        train_dataloader=dict(dataset=dict(type='ConcatDataset', datasets=datasets)),
        test_dataloader=dict(dataset=dict(data_root='data/test_only', ann_file='val.jsonl')),
        load_from='work_dirs/stage1/iter_10.pth',
        custom_hooks=[dict(type='SafeCheckpointHook')],
        resume=False,
    )
    return cfg


def test_everything_present_passes(assets):
    assert check_assets(assets, ['model', 'train_dataloader', 'load_from', 'resume']) == []
    run_preflight(assets, 'train')


REMOVE = {
    'llm': ('checkpoints/vicuna-7b-v1.5', 'prepare_weights.py --only vicuna-7b-v1.5'),
    'clip': ('checkpoints/clip-vit-large-patch14-336', '--only clip-vit-large-patch14-336'),
    'convnext': ('checkpoints/clip-convnext-large-512-hf', '--only clip-convnext-large'),
    'ann_file': ('data/vt_instruct/refcoco/train_res.jsonl', 'build_vt_instruct.py'),
    'data_root': ('data/vt_instruct', 'build_vt_instruct.py'),
    'load_from': ('work_dirs/stage1/iter_10.pth', 'configs/refvlm/stage1.py'),
}


@pytest.mark.parametrize('item', sorted(REMOVE))
def test_one_missing_item_is_the_one_reported(assets, item):
    path, hint = REMOVE[item]
    shutil.rmtree(path) if os.path.isdir(path) else os.remove(path)
    with pytest.raises(PreflightError) as err:
        run_preflight(assets, 'train', config_name='stage2.py')
    (missing,) = err.value.missing
    assert missing.value == path and hint in missing.hint
    message = str(err.value)
    assert message.startswith('preflight: 1 asset(s) named by stage2.py are missing')
    assert path in message and hint in message and '--skip-preflight' in message
    if item == 'llm':  # the tokenizer source names the same folder: listed once, both keys
        assert {'model.llm.name_or_path', 'model.tokenizer.source'} <= set(missing.keys)
        assert "'checkpoints/vicuna-7b-v1.5' (model.llm.name_or_path (+" in message
    if item == 'data_root':  # one entry, not one per annotation file
        assert len(missing.keys) == len(FILES)


def test_all_missing_in_one_message(assets):
    for path in ('checkpoints', 'data', 'work_dirs'):
        shutil.rmtree(path)
    with pytest.raises(PreflightError) as err:
        run_preflight(assets, 'train')
    assert len(err.value.missing) == 5  # three models, the data root, load_from


def test_incomplete_model_folders(assets):
    os.remove('checkpoints/clip-vit-large-patch14-336/model.safetensors')
    os.remove('checkpoints/clip-convnext-large-512-hf/config.json')
    reasons = {m.value: m.reason for m in check_assets(assets, ['model'])}
    assert reasons == {
        'checkpoints/clip-vit-large-patch14-336': 'no weight files (*.safetensors, *.bin) in it',
        'checkpoints/clip-convnext-large-512-hf': 'no config.json in it (incomplete download?)',
    }
    assets.model.vision_encoder.load_weights = False  # reads only config.json
    assert [m.value for m in check_assets(assets, ['model'])] == [
        'checkpoints/clip-convnext-large-512-hf'
    ]


def test_sections_follow_the_run(assets):
    shutil.rmtree('data/vt_instruct')
    missing = check_assets(assets, ['model', 'test_dataloader'])
    assert [m.value for m in missing] == ['data/test_only']  # the train data is not checked
    assets.val_dataloader = dict(dataset=dict(data_root='data/nowhere', ann_file='v.jsonl'))
    assets.val_cfg = assets.val_evaluator = None  # no validation: its data is not needed
    assert [m.value for m in check_assets(assets, ['val_dataloader'])] == ['data/nowhere']
    os.makedirs('data/vt_instruct/refcoco')
    for f in FILES:
        open(f'data/vt_instruct/refcoco/{f}', 'w').close()
    run_preflight(assets, 'train')
    with pytest.raises(ValueError, match="mode must be one of .*'deploy'"):
        run_preflight(assets, 'deploy')


def _cache_repo(cache, repo_id, filename):
    folder = cache / ('models--' + repo_id.replace('/', '--'))
    (folder / 'refs').mkdir(parents=True)
    (folder / 'refs' / 'main').write_text('abc123')
    (folder / 'snapshots' / 'abc123').mkdir(parents=True)
    (folder / 'snapshots' / 'abc123' / filename).write_text('{}')


def test_hub_ids_online_offline_and_cached(assets, monkeypatch, tmp_path):
    import huggingface_hub.constants as hf_constants

    assets.model.llm.name_or_path = 'lmsys/vicuna-7b-v1.5'
    assets.model.vision_encoder.name_or_path = 'someone/tiny-clip'
    monkeypatch.setenv('HF_HUB_OFFLINE', '1')
    cache = tmp_path / 'hf_cache'
    monkeypatch.setattr(hf_constants, 'HF_HUB_CACHE', str(cache))
    missing = check_assets(assets, ['model'])
    assert [m.value for m in missing] == ['lmsys/vicuna-7b-v1.5', 'someone/tiny-clip']
    assert 'offline' in missing[0].reason and 'hf download lmsys/vicuna-7b-v1.5' in missing[0].hint
    assert '--only vicuna-7b-v1.5' in missing[0].hint  # the local alternative for paper weights
    _cache_repo(cache, 'someone/tiny-clip', 'config.json')
    assert [m.value for m in check_assets(assets, ['model'])] == ['lmsys/vicuna-7b-v1.5']
    monkeypatch.setenv('HF_HUB_OFFLINE', '0')
    monkeypatch.setenv('TRANSFORMERS_OFFLINE', '0')
    assert check_assets(assets, ['model']) == []  # online: transformers fetches them


def test_builtin_tokenizer_and_remote_files_are_not_paths(assets):
    assets.model.tokenizer = dict(source='demo')
    assets.load_from = 'https://example.org/ckpt.pth'
    assets.custom_hooks = [dict(type='InitUnitDecoderHook', checkpoint='work_dirs/stage2/x.pth')]
    missing = check_assets(assets, ['model', 'load_from', 'custom_hooks'])
    assert [(m.value, m.keys) for m in missing] == [
        ('work_dirs/stage2/x.pth', ['custom_hooks[0].checkpoint'])
    ]
    assert 'configs/refvlm/stage2.py' in missing[0].hint


@pytest.mark.parametrize(
    'files, usable',
    [
        (('config.json', 'model.safetensors'), True),
        (('config.json', 'pytorch_model.bin'), True),
        (('config.json', 'model.pth'), False),  # from_pretrained does not read .pth / .pt
        (('config.json', 'model.pt'), False),
        (('config.json', 'model.gguf'), False),  # only with gguf_file
        (('model.safetensors',), False),
        ((), False),
    ],
)
def test_preflight_and_prepare_weights_agree_on_a_model_folder(assets, files, usable):
    from mmrefvlm.testing.tool_helpers import load_tool

    folder = 'checkpoints/vicuna-7b-v1.5'
    for name in os.listdir(folder):
        if name != 'tokenizer.json':
            os.remove(os.path.join(folder, name))
    for name in files:
        open(os.path.join(folder, name), 'w').close()
    flagged = [m.value for m in check_assets(assets, ['model']) if m.value == folder]
    assert (not flagged) is usable
    assert load_tool('misc/prepare_weights').is_ready(folder) is usable


def test_a_gguf_model_folder_counts_with_gguf_file(assets):
    folder = 'checkpoints/vicuna-7b-v1.5'
    os.remove(os.path.join(folder, 'model.safetensors'))
    open(os.path.join(folder, 'model.Q8_0.gguf'), 'w').close()
    reasons = {m.value: m.reason for m in check_assets(assets, ['model'])}
    assert reasons == {folder: 'no weight files (*.safetensors, *.bin) in it'}
    assets.model.llm.gguf_file = 'model.Q8_0.gguf'
    assert check_assets(assets, ['model']) == []
