# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""The project config through the real tools: ``tools/train.py`` (2 steps) then ``tools/test.py``
producing ``point`` predictions and the ``point/*`` metrics."""
import importlib.util
import os.path as osp

import pytest
import torch

REPO = osp.dirname(osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))
CONFIG = osp.join(REPO, 'projects', 'example_unit', 'configs', 'refvlm_tiny_point_demo.py')
DEMO = osp.join(REPO, 'data', 'demo')


class ScriptedLM:
    """An HF causal LM whose greedy choice follows a fixed token script; the hidden states (what
    the router sends to the decoders) are still the real model's. A 2-step model emits no TRP."""

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
    if not osp.isfile(osp.join(DEMO, 'annotations', 'train_rec.jsonl')):
        from mmrefvlm.datasets import ensure_demo_dataset
        ensure_demo_dataset(DEMO)
    return DEMO


def test_config_adds_the_point_unit():
    from mmrefvlm.apis import load_config
    cfg = load_config(CONFIG)
    assert set(cfg.model.unit_decoders) == {'point'}
    assert cfg.model.loss_weights == dict(llm=1.0, point=1.0)
    assert cfg.custom_imports.imports == ['projects.example_unit.point_unit']
    assert cfg.train_cfg.max_iters <= 1000


def test_train_two_steps_then_test_predicts_points(demo_root, tmp_path, monkeypatch):
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
    state = torch.load(ckpt, map_location='cpu', weights_only=True)['state_dict']
    assert any(k.startswith('unit_decoders.point.head.') for k in state)

    tok = build_tokenizer('demo')
    ids = tok.encode('<Phrase>the object</Phrase>(<Unit>point</Unit>[0]<REF>).') + [tok.ids.eos]
    real = refvlm_module.greedy_generate
    monkeypatch.setattr(refvlm_module, 'greedy_generate',
                        lambda llm, *a, **k: real(ScriptedLM(llm, ids), *a, **k))
    predicted = []
    original_predict = refvlm_module.RefVLM.predict

    def spy_predict(self, inputs, data_samples):
        predicted.extend(original_predict(self, inputs, data_samples))
        return predicted[-len(data_samples):]

    monkeypatch.setattr(refvlm_module.RefVLM, 'predict', spy_predict)
    metrics = test_tool.main([CONFIG, ckpt, '--work-dir', str(tmp_path / 'test'),
                              '--cfg-options', *common])
    assert {'point/acc', 'point/mean_dist', 'point/center_acc'} <= set(metrics)
    assert metrics['point/num_points'] == 2
    assert len(predicted) == 2
    for sample in predicted:
        pred = sample.pred_instances
        h, w = sample.metainfo['ori_shape']
        assert pred.units == ['point'] and pred.points.shape == (1, 2)
        assert (pred.points >= 0).all() and (pred.points <= torch.tensor([w, h])).all()
