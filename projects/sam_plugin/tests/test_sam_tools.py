# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""The tiny SAM config end to end: ``tools/train.py`` for a few steps on CPU, then ``tools/test.py``
predicting masks with the SAM decoder from the trained checkpoint."""

import os.path as osp

import pytest
import torch

from mmrefvlm.testing.tool_helpers import ScriptedLM, demo_data_root, load_tool

REPO = osp.dirname(osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))
CONFIG = osp.join(REPO, 'projects', 'sam_plugin', 'configs', 'refvlm_tiny_sam_demo.py')


@pytest.fixture(scope='module')
def demo_root():
    return demo_data_root()


def test_train_few_steps_then_test_predicts_masks(demo_root, tmp_path, monkeypatch):
    train_tool, test_tool = load_tool('train'), load_tool('test')

    from mmrefvlm.models import refvlm as refvlm_module
    from mmrefvlm.tokenization import build_tokenizer

    work = str(tmp_path / 'work')
    common = [
        'train_dataloader.batch_size=2',
        'test_dataloader.batch_size=2',
        'test_dataloader.dataset.indices=2',
        'model.max_new_tokens=24',
    ]
    train_tool.main(
        [
            CONFIG,
            '--work-dir',
            work,
            '--cfg-options',
            'train_cfg.max_iters=2',
            'train_cfg.val_interval=100',
            'default_hooks.checkpoint.interval=2',
            *common,
        ]
    )
    ckpt = osp.join(work, 'iter_2.pth')
    assert osp.isfile(ckpt)
    state = torch.load(ckpt, map_location='cpu', weights_only=True)['state_dict']
    assert any(k.startswith('unit_decoders.mask.sam.mask_decoder.') for k in state)

    # Force the (2-step) LLM to answer in TRP with one mask <REF>; everything else is real.
    tok = build_tokenizer('demo')
    ids = tok.encode('<Phrase>the object</Phrase>(<Unit>mask</Unit>[0]<REF>).') + [tok.ids.eos]
    real = refvlm_module.greedy_generate
    calls = []

    def scripted_generate(llm, *args, **kwargs):
        calls.append(1)
        return real(ScriptedLM(llm, ids), *args, **kwargs)

    monkeypatch.setattr(refvlm_module, 'greedy_generate', scripted_generate)
    predicted = []
    original_predict = refvlm_module.RefVLM.predict

    def spy_predict(self, inputs, data_samples):
        samples = original_predict(self, inputs, data_samples)
        predicted.extend(samples)
        return samples

    monkeypatch.setattr(refvlm_module.RefVLM, 'predict', spy_predict)
    metrics = test_tool.main(
        [CONFIG, ckpt, '--work-dir', str(tmp_path / 'test'), '--cfg-options', *common]
    )
    assert calls and {'res/mIoU', 'res/cIoU'} <= set(metrics)
    assert len(predicted) == 2
    for sample in predicted:
        pred = sample.pred_instances
        assert pred.units == ['mask']
        h, w = sample.metainfo['ori_shape']
        assert pred.masks.shape == (1, h, w) and pred.masks.dtype == torch.bool
