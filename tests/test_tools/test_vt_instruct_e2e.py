# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""From the converters' public-format fixtures to 2 training iterations of stage 2's pipeline:
build_vt_instruct.py into data/vt_instruct, validate, count per task, then tools/train.py
configs/refvlm/stage2.py with tiny models through --cfg-options, on CPU."""

import json
import math
import os
import os.path as osp
import pickle
import shutil

import numpy as np
import pytest
from mmengine.config import Config
from PIL import Image

from mmrefvlm.testing.tool_helpers import REPO_ROOT, load_tool

FIXTURES = osp.join(REPO_ROOT, 'tests', 'data', 'converters')
STAGE2 = osp.join(REPO_ROOT, 'configs', 'refvlm', 'stage2.py')
STAGE2_TASKS = ('rec', 'res', 'gres', 'vqa', 'caption', 'ovd', 'ovs', 'gcg_box', 'gcg_mask')
STAGE2_TASKS += ('ig_box', 'ig_mask')
IMAGE_FOLDERS = (
    'coco/train2014',
    'coco/train2017',
    'coco/val2017',
    'flickr30k/flickr30k-images',
    'GranDf/GranDf_HA_images/train',
)


def _copy(src_rel, dst):
    os.makedirs(osp.dirname(dst), exist_ok=True)
    copy = shutil.copytree if osp.isdir(osp.join(FIXTURES, src_rel)) else shutil.copy
    copy(osp.join(FIXTURES, src_rel), dst)


def _refs_with_train_split(dst):
    """The RefCOCO fixture's refs, each also as a train ref (the fixture is mostly val)."""
    refconv = load_tool('dataset_converters/refcoco')
    refs = refconv.load_refs_pickle(osp.join(FIXTURES, 'refcoco', 'refs(unc).p'))
    extra = [
        dict(r, ref_id=r['ref_id'] + 100, split='train') for r in refs if r['split'] != 'train'
    ]
    os.makedirs(osp.dirname(dst), exist_ok=True)
    with open(dst, 'wb') as f:
        pickle.dump(refs + extra, f, protocol=2)


def public_layout(src):
    """The fixtures laid out as the public downloads are (docs/prepare.md), under ``src``."""
    for train_name, fixture in (
        ('instances_train2017.json', 'coco/instances_val2017.json'),
        ('captions_train2017.json', 'coco/captions_val2017.json'),
        ('captions_val2017.json', 'coco/captions_val2017.json'),
    ):
        _copy(fixture, osp.join(src, 'coco', 'annotations', train_name))
    for name, refs in (
        ('refcoco', 'refs(unc).p'),
        ('refcoco+', 'refs(unc).p'),
        ('refcocog', 'refs(umd).p'),
    ):
        _refs_with_train_split(osp.join(src, name, refs))
        _copy('refcoco/instances.json', osp.join(src, name, 'instances.json'))
    _copy('grefcoco', osp.join(src, 'grefcoco'))
    for part in ('Annotations', 'Sentences'):
        _copy(f'flickr30k/{part}', osp.join(src, 'flickr30k_entities', part))
    _copy('flickr30k/test.txt', osp.join(src, 'flickr30k_entities', 'train.txt'))
    _copy(
        'grandf/GranDf_HA_GCG_train.json',
        osp.join(src, 'GranDf', 'annotations', 'train', 'GranDf_HA_GCG_train.json'),
    )
    _copy(
        'coco_interactive/coco_interactive_val_psalm.json',
        osp.join(src, 'coco_interactive', 'coco_interactive_train_psalm.json'),
    )
    _copy('llava', osp.join(src, 'llava'))
    for folder in IMAGE_FOLDERS:
        os.makedirs(osp.join(src, folder), exist_ok=True)


def materialise_images(out, files):
    """A random image of the recorded size for every record image that is not there yet."""
    rng = np.random.default_rng(0)
    for path in files:
        with open(path) as f:
            for line in f:
                image = json.loads(line)['image']
                full = osp.join(out, image['path']) if image else None
                if full and not osp.exists(full):
                    os.makedirs(osp.dirname(full), exist_ok=True)
                    pixels = rng.integers(0, 255, (image['height'], image['width'], 3), np.uint8)
                    Image.fromarray(pixels).save(full)


def tiny_stage2_options(cfg):
    """--cfg-options that shrink configs/refvlm/stage2.py's models (same pipeline, sizes, tokens
    per image) and make it run on CPU in seconds."""
    opts = ['model.tokenizer.source=demo', 'model.gradient_checkpointing=False']
    llm = dict(
        model_type='llama',
        vocab_size=2048,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=4096,
        tie_word_embeddings=False,
    )
    vit = dict(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        image_size=336,
        patch_size=14,
    )  # 576 image tokens, as CLIP-L/14-336
    convnext = dict(depths='[1,1,1,1]', hidden_sizes='[8,16,24,32]', image_size=512)
    for part, config in (('llm', llm), ('vision_encoder', vit), ('pyramid_encoder', convnext)):
        opts += [f'model.{part}.name_or_path=None', f'model.{part}.torch_dtype=float32']
        opts += [f'model.{part}.config.{k}={v}' for k, v in config.items()]
    dec = dict(
        num_queries=4,
        d_model=32,
        num_layers=1,
        num_heads=2,
        ffn_dim=64,
        pyramid_channels='[8,16,24,32]',
        clip_channels=32,
    )
    opts += [f'model.unit_decoders.box.{k}={v}' for k, v in dec.items()]
    opts += ['model.unit_decoders.box.memory_size=16']
    opts += [f'model.unit_decoders.mask.{k}={v}' for k, v in dec.items()]
    opts += ['model.unit_decoders.mask.fpn_dim=32', 'model.unit_decoders.mask.mask_dim=32']
    for loader in ('train_dataloader', 'val_dataloader'):
        opts += [f'{loader}.num_workers=0', f'{loader}.persistent_workers=False']
        for i, ds in enumerate(cfg[loader].dataset.datasets):
            for j, t in enumerate(ds.pipeline):
                if 'tokenizer' in t:
                    opts.append(f'{loader}.dataset.datasets.{i}.pipeline.{j}.tokenizer.source=demo')
    # AMP (bf16 autocast) needs a GPU: plain fp32 AdamW with the same guard and clipping
    opts += [
        'optim_wrapper._delete_=True',
        'optim_wrapper.type=NaNGuardOptimWrapper',
        'optim_wrapper.optimizer.type=AdamW',
        'optim_wrapper.optimizer.lr=1e-4',
        'optim_wrapper.clip_grad.max_norm=1.0',
    ]
    opts += [
        'train_dataloader.batch_size=2',
        'train_cfg.max_iters=2',
        'default_hooks.checkpoint.interval=2',
        'default_hooks.logger.interval=1',
    ]
    return opts


@pytest.mark.timeout(600)
def test_fixtures_to_vt_instruct_to_two_stage2_iterations(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # the configs read data/vt_instruct relative to here
    public_layout('src')
    out = osp.join('data', 'vt_instruct')

    # 1. the build recipe: every converter of the stage-2 mix, validated, counted
    build = load_tool('dataset_converters/build_vt_instruct')
    assert build.main(['--src', 'src', '--skip-file-check']) == 0
    report = capsys.readouterr().out
    cfg = Config.fromfile(STAGE2)
    train_files = [d.ann_file for d in cfg.train_dataloader.dataset.datasets]
    val_files = [d.ann_file for d in cfg.val_dataloader.dataset.datasets]
    for name in train_files + val_files:
        assert osp.isfile(osp.join(out, name)), name
    for line in ('referring expression', 'open-vocabulary identification', '40.57%', '16.30%'):
        assert line in report
    rows = [r.split() for r in report.splitlines()]
    counts = {r[0]: int(r[1]) for r in rows if len(r) >= 3 and r[0] in STAGE2_TASKS}
    assert set(counts) == set(STAGE2_TASKS) and all(n > 0 for n in counts.values()), counts

    # 2. images in place, then the records validate with file checks
    files = [osp.join(out, f) for f in train_files + val_files]
    materialise_images(out, files)
    # the image folders are links to the downloads: outside the data root by design
    validate = load_tool('misc/validate_records').main
    assert validate([*files, '--data-root', out, '--allow-outside-data-root']) == 0
    assert validate([*files, '--data-root', out]) == 1  # refused without the switch

    # 3. two iterations of stage2.py's pipeline with tiny models (fixtures leave some sources
    # without train records: their sampling ratio is 0)
    sizes = [sum(1 for _ in open(osp.join(out, f))) for f in train_files]
    ratios = [
        r if n else 0 for r, n in zip(cfg.train_dataloader.sampler.ratios, sizes, strict=True)
    ]
    opts = tiny_stage2_options(cfg) + [
        'train_dataloader.sampler.ratios=[' + ','.join(map(str, ratios)) + ']'
    ]
    load_tool('train').main([STAGE2, '--work-dir', 'work', '--cfg-options', *opts])
    assert osp.isfile(osp.join('work', 'iter_2.pth'))
    rows = [
        json.loads(line)
        for run in os.listdir('work')
        if osp.isfile(osp.join('work', run, 'vis_data', 'scalars.json'))
        for line in open(osp.join('work', run, 'vis_data', 'scalars.json'))
    ]
    losses = [r['loss'] for r in rows if 'loss' in r]
    assert len(losses) == 2 and all(math.isfinite(v) for v in losses)


def test_several_data_roots_need_an_explicit_out(tmp_path, capsys):
    """A config whose dataloaders name two data roots: without --out the build stops with a
    message naming them (it used to write to data/vt_instruct, which neither names)."""
    cfg = tmp_path / 'two_roots.py'
    cfg.write_text(
        'train_dataloader = dict(dataset=dict(datasets=[\n'
        "    dict(data_root='data/a', ann_file='train_rec.jsonl'),\n"
        "    dict(data_root='data/b', ann_file='train_res.jsonl')]))\n"
    )
    build = load_tool('dataset_converters/build_vt_instruct')
    assert build.main(['--config', str(cfg), '--src', str(tmp_path / 'src')]) == 2
    err = capsys.readouterr().err
    assert "several data roots ['data/a', 'data/b']" in err and '--out' in err
    assert not (tmp_path / 'data').exists()
