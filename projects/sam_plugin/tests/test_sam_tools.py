# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""The tiny SAM config end to end: ``tools/train.py`` for a few steps on CPU, then ``tools/test.py``
predicting masks with the SAM decoder from the trained checkpoint."""
import importlib.util
import os.path as osp

import pytest
import torch

REPO = osp.dirname(osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))
CONFIG = osp.join(REPO, 'projects', 'sam_plugin', 'configs', 'refvlm_tiny_sam_demo.py')
DEMO = osp.join(REPO, 'data', 'demo')


class ScriptedLM:
    """An HF causal LM whose greedy choice follows a fixed token script; the hidden states (what
    the router sends to SAM) are still the real model's. A 2-step model emits no TRP yet."""

    def __init__(self, llm, ids):
        self.llm, self.ids, self.calls = llm, ids, 0

    def get_decoder(self):
        return self.llm.get_decoder()

    def get_input_embeddings(self):
        return self.llm.get_input_embeddings()

    def get_output_embeddings(self):
        vocab = self.llm.get_input_embeddings().weight.shape[0]

        def head(h):
            logits = torch.zeros(h.shape[0], vocab, device=h.device)
            logits[:, self.ids[min(self.calls, len(self.ids) - 1)]] = 1.
            self.calls += 1
            return logits
        return head


def load_tool(name):
    """``tools/<name>.py`` as a module (under a unique name: ``test`` is also a stdlib package)."""
    spec = importlib.util.spec_from_file_location(f'mmrefvlm_tools_{name}',
                                                  osp.join(REPO, 'tools', f'{name}.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope='module')
def demo_root():
    if not osp.isfile(osp.join(DEMO, 'annotations', 'train_res.jsonl')):
        from mmrefvlm.datasets import ensure_demo_dataset
        ensure_demo_dataset(DEMO)
    return DEMO


def test_train_few_steps_then_test_predicts_masks(demo_root, tmp_path, monkeypatch):
    train_tool, test_tool = load_tool('train'), load_tool('test')

    from mmrefvlm.models import refvlm as refvlm_module
    from mmrefvlm.tokenization import build_tokenizer

    work = str(tmp_path / 'work')
    common = ['train_dataloader.batch_size=2', 'test_dataloader.batch_size=2',
              'test_dataloader.dataset.indices=2', 'model.max_new_tokens=24']
    train_tool.main([CONFIG, '--work-dir', work, '--cfg-options', 'train_cfg.max_iters=2',
                     'train_cfg.val_interval=100', 'default_hooks.checkpoint.interval=2',
                     *common])
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
    metrics = test_tool.main([CONFIG, ckpt, '--work-dir', str(tmp_path / 'test'),
                              '--cfg-options', *common])
    assert calls and {'res/mIoU', 'res/cIoU'} <= set(metrics)
    assert len(predicted) == 2
    for sample in predicted:
        pred = sample.pred_instances
        assert pred.units == ['mask']
        h, w = sample.metainfo['ori_shape']
        assert pred.masks.shape == (1, h, w) and pred.masks.dtype == torch.bool
