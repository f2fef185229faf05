# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""The LISA demo config through ``tools/train.py`` (2 steps) and ``tools/test.py`` (masks decoded
from the [SEG] state at its emitting position), and what the config trains."""

import os.path as osp

import pytest
import torch

from mmrefvlm.testing.tool_helpers import demo_data_root, train_then_test_scripted

REPO = osp.dirname(osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))
CONFIG = osp.join(REPO, 'projects', 'lisa', 'configs', 'lisa_tiny_demo.py')
SUBSET = (
    'test_dataloader.dataset.datasets.0.indices=1',
    'test_dataloader.dataset.datasets.1.indices=1',
)


@pytest.fixture(scope='module')
def demo_root():
    return demo_data_root()


def test_config_is_lisa():
    from mmrefvlm.apis import load_config

    cfg = load_config(CONFIG)
    assert cfg.model.router.ref_position == 'emitting'
    assert set(cfg.model.unit_decoders) == {'mask'}
    assert cfg.model.loss_weights == dict(llm=1.0, mask=1.0)
    dec = cfg.model.unit_decoders.mask
    assert dec.type.__name__ == 'LisaMaskDecoder' if hasattr(dec.type, '__name__') else True
    assert cfg.model.tokenizer.extra_tokens == ['[SEG]']
    assert cfg.model.pyramid_encoder is None


def test_train_two_steps_then_test_segments(demo_root, tmp_path, monkeypatch):
    ckpt, metrics, predicted = train_then_test_scripted(
        CONFIG, str(tmp_path), monkeypatch, 'Sure, it is [SEG].', test_subset=SUBSET
    )
    state = torch.load(ckpt, map_location='cpu', weights_only=True)['state_dict']
    assert any(k.startswith('unit_decoders.mask.sam.mask_decoder.') for k in state)
    assert any(k.startswith('unit_decoders.mask.text_proj.') for k in state)
    assert {'res/cIoU', 'res/mIoU', 'gres/gIoU', 'gres/N-acc', 'gres/T-acc'} <= set(metrics)
    assert [s.task for s in predicted] == ['res', 'gres']
    for sample in predicted:
        pred = sample.pred_instances
        h, w = sample.metainfo['ori_shape']
        assert pred.units == ['mask'] and pred.masks.shape == (1, h, w)
        assert sample.pred_text == 'Sure, it is [SEG].'
        assert sample.pred_answer[0]['groups'] == [{'units': ['mask'], 'n': 1}]
