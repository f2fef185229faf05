# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""The GSVA demo configs through ``tools/train.py`` (2 steps) and ``tools/test.py`` in both
evaluation modes (free generation, then teacher-forced on the same checkpoint), and what the
per-dataset config feeds the model."""

import os.path as osp

import pytest
import torch

from mmrefvlm.testing.tool_helpers import demo_data_root, load_tool, train_then_test_scripted

REPO = osp.dirname(osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))
CONFIG = osp.join(REPO, 'projects', 'gsva', 'configs', 'gsva_tiny_demo.py')
CONFIG_TF = osp.join(REPO, 'projects', 'gsva', 'configs', 'gsva_tiny_demo_tf.py')
CONFIG_PD = osp.join(REPO, 'projects', 'gsva', 'configs', 'gsva_tiny_demo_per_dataset.py')
CONFIG_PD_TF = osp.join(REPO, 'projects', 'gsva', 'configs', 'gsva_tiny_demo_per_dataset_tf.py')
SUBSET = tuple(f'test_dataloader.dataset.datasets.{i}.indices=1' for i in range(2))
SUBSET_TF = (*SUBSET, 'test_dataloader.dataset.datasets.2.indices=1')
KEYS = ('gIoU', 'cIoU', 'N-acc', 'T-acc')


@pytest.fixture(scope='module')
def demo_root():
    return demo_data_root()


def test_train_two_steps_then_test_in_both_modes(demo_root, tmp_path, monkeypatch):
    ckpt, metrics, predicted = train_then_test_scripted(
        CONFIG,
        str(tmp_path),
        monkeypatch,
        'Sure, the object:[SEG], nothing:[REJ].',
        test_subset=SUBSET,
    )
    state = torch.load(ckpt, map_location='cpu', weights_only=True)['state_dict']
    assert any(k.startswith('unit_decoders.mask.sam.mask_decoder.') for k in state)
    for prefix in ('res', 'gres', 'gsva'):
        keys = ('cIoU', 'mIoU') if prefix == 'res' else KEYS
        assert {f'{prefix}/{k}' for k in keys} <= set(metrics), prefix
    assert [s.task for s in predicted] == ['res', 'gres']
    for sample in predicted:
        assert sample.pred_slots.rejected.tolist() == [False, True]
        h, w = sample.metainfo['ori_shape']
        assert sample.pred_slots.masks.shape == (2, h, w) and not sample.pred_slots.masks[1].any()
    # teacher-forced: the ground-truth answer is fed, no generation
    metrics_tf = load_tool('test').main(
        [CONFIG_TF, ckpt, '--work-dir', str(tmp_path / 'tf'), '--cfg-options', *SUBSET_TF]
    )
    for prefix in ('gsva', 'gsva_code', 'gsva_grouped', 'gsva_grouped_code'):
        assert {f'{prefix}/{k}' for k in KEYS} <= set(metrics_tf), prefix


def test_per_dataset_config_through_the_tools(demo_root, tmp_path, monkeypatch):
    ckpt, metrics, predicted = train_then_test_scripted(
        CONFIG_PD, str(tmp_path), monkeypatch, 'Sure, the object:[REJ].', test_subset=SUBSET
    )
    assert {f'gsva/{k}' for k in KEYS} <= set(metrics)
    assert [s.task for s in predicted] == ['res', 'gres']
    for sample in predicted:  # the scripted [REJ]: an empty mask, the decoder never ran
        assert sample.pred_slots.rejected.tolist() == [True]
        assert sample.pred_slots.decoded.tolist() == [False]
    assert metrics['gsva/T-acc'] == 0.0  # both val samples have a target and were rejected
    metrics_tf = load_tool('test').main(
        [CONFIG_PD_TF, ckpt, '--work-dir', str(tmp_path / 'tf'), '--cfg-options', *SUBSET]
    )
    for prefix in ('gsva', 'gsva_code'):
        assert {f'{prefix}/{k}' for k in KEYS} <= set(metrics_tf), prefix


def test_per_dataset_samples_come_from_one_dataset_with_its_system_prompt(demo_root):
    from mmengine.config import Config
    from mmengine.registry import init_default_scope

    from mmrefvlm.registry import DATASETS
    from mmrefvlm.tokenization import build_tokenizer

    init_default_scope('mmrefvlm')
    cfg = Config.fromfile(CONFIG_PD)
    assert cfg.train_dataloader.sampler.ratios == [4, 4, 3]  # the demo's rec : res : gres
    tok = build_tokenizer(**cfg.model.tokenizer)
    gres_system = 'Task: generalized referring segmentation.'
    short_system = cfg.system_prompt
    seen = set()
    for split, (dataset_cfg, first) in dict(
        train=(cfg.train_dataloader.dataset, 'Sure, '), val=(cfg.val_dataloader.dataset, 'A: ')
    ).items():
        concat = DATASETS.build(dataset_cfg)
        start = 0
        for sub in concat.datasets:
            for i in range(start, start + 40, 4):
                sample = concat[i]
                task = sample['data_samples'].metainfo['task']
                text = tok.hf.decode(sample['inputs']['input_ids'])
                slots = text.count('[SEG]') + text.count('[REJ]')
                # training: one expression of one dataset per sample (the demo has one per image
                # and dataset); val: the prompt only
                assert slots == (1 if split == 'train' else 0), text
                assert first in text
                system = gres_system if task == 'gres' else short_system
                assert system in text and (task == 'gres') == (gres_system in text), text
                seen.add((split, task))
            start += len(sub)
    assert seen == {
        ('train', 'rec'),
        ('train', 'res'),
        ('train', 'gres'),
        ('val', 'res'),
        ('val', 'gres'),
    }
