# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""The AnyRef demo config through ``tools/train.py`` (2 steps, every task of the mix: referring
segmentation, region captioning with a box reference, image- and audio-referring segmentation)
and ``tools/test.py`` (a scripted ``<obj>`` answer; refocusing, the references, SAM and the
metrics run for real)."""

import os.path as osp

import pytest
import torch

from mmrefvlm.datasets import ensure_demo_dataset
from mmrefvlm.datasets.demo import ALL_DEMO_TASKS
from mmrefvlm.testing.tool_helpers import DEMO_ROOT, train_then_test_scripted

REPO = osp.dirname(osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))
CONFIG = osp.join(REPO, 'projects', 'anyref', 'configs', 'anyref_tiny_demo.py')
VAL_TASKS = ['res', 'gres', 'reg', 'image_ref_seg', 'audio_ref_seg']
SUBSET = tuple(f'test_dataloader.dataset.datasets.{i}.indices=1' for i in range(len(VAL_TASKS)))


@pytest.fixture(scope='module')
def demo_root():
    ensure_demo_dataset(DEMO_ROOT, tasks=list(ALL_DEMO_TASKS))
    return DEMO_ROOT


def test_config_is_anyref():
    from mmrefvlm.apis import load_config

    cfg = load_config(CONFIG)
    assert cfg.model.router.ref_position == 'emitting'
    assert cfg.model.ref_refiner.lambda_f == 0.1
    assert cfg.model.ref_parser.ref_tokens == {'<obj>': 'mask'}
    assert set(cfg.model.input_encoders) == {'<img_feat>', '<aud_feat>'}
    assert cfg.model.loss_weights == dict(llm=1.0, mask=1.0)
    assert cfg.val_tasks == VAL_TASKS
    assert set(cfg.demo_dataset.tasks) == set(ALL_DEMO_TASKS)


def test_every_training_task_routes_its_obj(demo_root):
    """The pipeline parses the labels with the model's parser: each sample's ``label_refs`` (what
    the training step routes to the mask decoder) holds one ``<obj>`` per expression."""
    import projects.anyref.anyref_seg  # noqa: F401  (registers the transforms)
    from mmrefvlm.apis import load_config
    from mmrefvlm.registry import DATASETS

    cfg = load_config(CONFIG)
    for task, dataset in zip(cfg.train_tasks, cfg.train_dataloader.dataset.datasets, strict=True):
        ds = DATASETS.build(dataset)
        sample = ds[0]['data_samples']
        refs = sample.label_refs
        assert len(refs) >= 1 and all(units == ('mask',) for _, units, *_ in refs), task
        assert len(refs) == len(sample.gt_units.mask.masks), task


def test_train_two_steps_then_test(demo_root, tmp_path, monkeypatch):
    ckpt, metrics, predicted = train_then_test_scripted(
        CONFIG, str(tmp_path), monkeypatch, 'the red circle<obj>.', test_subset=SUBSET
    )
    state = torch.load(ckpt, map_location='cpu', weights_only=True)['state_dict']
    assert any(k.startswith('unit_decoders.mask.sam.mask_decoder.') for k in state)
    assert any(k.startswith('input_encoders.<aud_feat>.proj.') for k in state)
    assert any(k.startswith('input_encoders.<aud_feat>.encoder.') for k in state)
    want = {
        'res/cIoU',
        'gres/gIoU',
        'gres/N-acc',
        'reg/CIDEr',
        'reg/METEOR',
        'imgref/cIoU',
        'avs/mIoU',
    }
    assert want <= set(metrics), sorted(metrics)
    assert sorted(s.task for s in predicted) == sorted(VAL_TASKS)
    for sample in predicted:
        h, w = sample.metainfo['ori_shape']
        assert sample.pred_text == 'the red circle<obj>.'
        pred = sample.pred_instances
        assert pred.units == ['mask'] and pred.masks.shape == (1, h, w)
        assert sample.pred_answer[0]['phrase'] == 'the red circle'
    by_task = {s.task: s for s in predicted}
    assert len(by_task['image_ref_seg'].visual_refs) == 1
    assert 'image' in by_task['image_ref_seg'].visual_refs[0]
    assert 'box' in by_task['reg'].visual_refs[0]
    assert by_task['audio_ref_seg'].audio_refs[0].ndim == 1


def test_reference_records_that_do_not_fit_the_prompt_are_refused(demo_root):
    """One reference slot per prompt, and a sound at the encoder's sample rate: a record with two
    references, or a WAV at another rate, is a ``TargetError`` naming it (skippable), never
    a prompt with fewer placeholders than encoder rows or mel bands of the wrong width."""
    import copy

    import projects.anyref.anyref_seg  # noqa: F401  (registers the transforms)
    from mmrefvlm.apis import load_config
    from mmrefvlm.datasets.transforms import TargetError
    from mmrefvlm.registry import DATASETS

    cfg = load_config(CONFIG)
    i = list(cfg.train_tasks).index('audio_ref_seg')
    ds = DATASETS.build(cfg.train_dataloader.dataset.datasets[i])
    info = ds.get_data_info(0)
    assert ds.pipeline(copy.deepcopy(info))['data_samples'].label_refs  # the record as it is
    two = dict(info, references=info['references'] * 2)
    with pytest.raises(TargetError, match=r'needs exactly 1 reference, got 2'):
        ds.pipeline(copy.deepcopy(two))
    conv = next(t for t in ds.pipeline.transforms if type(t).__name__ == 'AnyRefConversation')
    conv.sample_rate = 16000
    with pytest.raises(TargetError, match=r'sampled at 8000 Hz, the audio encoder at 16000 Hz'):
        ds.pipeline(copy.deepcopy(info))
