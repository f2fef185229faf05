# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""GSVARefVLM: [REJ] gives an empty mask without running the decoder (generation), and the
teacher-forced decisions and re-evaluation of GSVA's public code."""

import os.path as osp

import pytest
import torch
from mmengine.registry import init_default_scope

from mmrefvlm.apis import load_config
from mmrefvlm.datasets import refvlm_collate
from mmrefvlm.models import refvlm as refvlm_module
from mmrefvlm.registry import DATASETS, MODELS
from mmrefvlm.testing.tool_helpers import ScriptedLM, demo_data_root
from projects.gsva.gsva_seg import model as gsva_model

REPO = osp.dirname(osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))
CONFIG = osp.join(REPO, 'projects', 'gsva', 'configs', 'gsva_tiny_demo_tf.py')


@pytest.fixture(scope='module')
def setup():
    root = demo_data_root()
    init_default_scope('mmrefvlm')
    cfg = load_config(CONFIG)
    torch.manual_seed(0)
    model = MODELS.build(cfg.model).eval()
    res_cfg, grouped_cfg = (
        cfg.test_dataloader.dataset.datasets[0],
        cfg.test_dataloader.dataset.datasets[2],
    )
    res = DATASETS.build(dict(res_cfg, data_root=root))
    grouped = DATASETS.build(dict(grouped_cfg, data_root=root))
    tok = model.tokenizer
    # a grouped sample whose ground truth has both [SEG] and [REJ] slots
    for i in range(len(grouped)):
        item = grouped[i]
        ids = item['inputs']['input_ids'][item['inputs']['labels'] != -100].tolist()
        if tok.ids['[SEG]'] in ids and tok.ids['[REJ]'] in ids:
            return model, [res[0], item]
    raise AssertionError('no grouped val sample with both [SEG] and [REJ]')


def _predict(model, items, mode):
    model.eval_mode = mode
    data = model.data_preprocessor(refvlm_collate(items), False)
    return model(**data, mode='predict')


def _gt_slot_tokens(model, item):
    ids = item['inputs']['input_ids'][item['inputs']['labels'] != -100].tolist()
    seg, rej = model.tokenizer.ids['[SEG]'], model.tokenizer.ids['[REJ]']
    return [t for t in ids if t in (seg, rej)]


@pytest.mark.parametrize('forced', ['[SEG]', '[REJ]', 'the'])
def test_teacher_forced_decisions_follow_gsvas_rule(setup, monkeypatch, forced):
    model, items = setup
    tok = model.tokenizer
    forced_id = tok.encode(forced)[0] if forced == 'the' else tok.ids[forced]
    real = gsva_model.split_llm

    def constant_head(llm):
        decoder, head, embed = real(llm)

        def fake(h):
            logits = head(h)
            out = torch.zeros_like(logits)
            out[..., forced_id] = 1.0
            return out + logits * 0.0

        return decoder, fake, embed

    monkeypatch.setattr(gsva_model, 'split_llm', constant_head)
    calls = []
    real_parser = model.ref_parser

    def spy(ids, *args, **kwargs):
        calls.append(ids.clone())
        return real_parser(ids, *args, **kwargs)

    monkeypatch.setattr(model, 'ref_parser', spy)
    out = _predict(model, items, 'teacher_forced')
    seg, rej = tok.ids['[SEG]'], tok.ids['[REJ]']
    for sample, item in zip(out, items, strict=True):
        gt = _gt_slot_tokens(model, item)
        # at a GT [SEG]: rejected unless [SEG] is predicted; at a GT [REJ]: only if [REJ] is
        expected = [(forced_id != seg) if t == seg else (forced_id == rej) for t in gt]
        assert sample.pred_slots.rejected.tolist() == expected
        assert sample.pred_slots.decoded.all() and len(sample.pred_slots.masks) == len(gt)
        assert len(sample.pred_instances) == expected.count(False)
    # the re-evaluation pass sees no [REJ]: every slot is a [SEG] and gets decoded
    assert calls and all(rej not in c.tolist() for c in calls)


def test_teacher_forced_needs_the_answer(setup):
    model, items = setup
    data = model.data_preprocessor(refvlm_collate(items), False)
    data['inputs']['labels'] = torch.full_like(data['inputs']['labels'], -100)
    model.eval_mode = 'teacher_forced'
    with pytest.raises(ValueError, match='predict=False'):
        model(**data, mode='predict')


def test_generated_rej_gives_an_empty_mask_without_the_decoder(setup, monkeypatch):
    model, items = setup
    tok = model.tokenizer
    answer = 'Sure, the red circle:[SEG], all diamonds:[REJ], the square:[SEG].'
    ids = tok.encode(answer) + [tok.ids.eos]
    real_generate = refvlm_module.greedy_generate
    monkeypatch.setattr(
        refvlm_module,
        'greedy_generate',
        lambda llm, *a, **k: real_generate(ScriptedLM(llm, ids), *a, **k),
    )
    decoder = model.unit_decoders.mask
    seen = []
    real_forward = decoder.forward

    def counting_forward(queries, *args, **kwargs):
        seen.append(int(queries.mask.sum()))
        return real_forward(queries, *args, **kwargs)

    monkeypatch.setattr(decoder, 'forward', counting_forward)
    out = _predict(model, items, 'generate')
    assert seen == [4]  # 2 [SEG] per sample, 2 samples: the [REJ] slots never reach SAM
    for sample in out:
        slots = sample.pred_slots
        assert slots.rejected.tolist() == [False, True, False]
        assert slots.decoded.tolist() == [True, False, True]
        assert not slots.masks[1].any()
        assert torch.equal(slots.masks[0], sample.pred_instances.masks[0])
        assert sample.pred_instances.labels == ['the red circle', 'the square']
        assert [g['groups'][0]['n'] for g in sample.pred_answer if isinstance(g, dict)] == [1, 0, 1]
