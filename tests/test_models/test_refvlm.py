# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""RefVLM end to end on tiny modules: losses, fake inputs, LoRA, robust predict."""

import copy

import pytest
import torch
from mmengine.registry import init_default_scope
from mmengine.structures import InstanceData
from torch import nn

from mmrefvlm.datasets import refvlm_collate
from mmrefvlm.models import RefVLM
from mmrefvlm.models.generation import GenerationOutput
from mmrefvlm.models.unit_decoders.base import BaseVisualUnitDecoder
from mmrefvlm.tokenization import build_tokenizer

from ..test_datasets.conftest import scene  # noqa: F401  (fixture)
from ..test_datasets.test_pipeline import make_pipeline


class TinyBox(BaseVisualUnitDecoder):
    unit = 'box'

    def __init__(self, in_channels, num_queries=4):
        super().__init__(in_channels, num_queries=num_queries)
        self.head = nn.Linear(in_channels, 4)
        self.feat = nn.Linear(16, 1)

    def forward(self, q, vis):
        f = self.feat(vis.pyramid[0].mean((2, 3)))[:, None]  # (B, 1, 1)
        return dict(boxes=(self.head(q.embeds) + f).sigmoid())

    def loss(self, q, vis, samples):
        out = self(q, vis)['boxes']
        if not q.mask.any():  # the fake input: same key, zero value, full graph
            return dict(loss_box_l1=out.sum() * 0.0)
        pred = out[q.mask]
        gt = torch.cat([s.gt_units.box.bboxes for s in samples if 'box' in s.gt_units])
        return dict(loss_box_l1=(pred - gt).abs().mean())

    def predict(self, q, vis, samples, rescale=True):
        out = self(q, vis)['boxes']
        return [
            InstanceData(
                bboxes=out[b][q.mask[b]] * s.metainfo['square_size'],
                scores=torch.ones(int(q.mask[b].sum())),
            )
            for b, s in enumerate(samples)
        ]


def build(**kw):
    init_default_scope('mmrefvlm')
    torch.manual_seed(0)
    cfg = dict(
        tokenizer=dict(source='demo'),
        llm=dict(
            config=dict(
                model_type='llama',
                vocab_size=800,
                hidden_size=32,
                intermediate_size=64,
                num_hidden_layers=1,
                num_attention_heads=4,
                num_key_value_heads=4,
            )
        ),
        vision_encoder=dict(
            type='CLIPViTEncoder',
            frozen=False,
            config=dict(
                hidden_size=16,
                intermediate_size=32,
                num_hidden_layers=2,
                num_attention_heads=2,
                image_size=24,
                patch_size=8,
            ),
        ),
        pyramid_encoder=dict(
            type='ConvNeXtPyramid',
            config=dict(depths=[1, 1, 1, 1], hidden_sizes=[16, 16, 16, 16], image_size=32),
        ),
        unit_decoders=dict(box=TinyBox(32)),
        loss_weights=dict(llm=1.0, box=0.5),
    )
    cfg.update(kw)
    return RefVLM(**cfg)


def batch(scene, model, records, predict=False):
    pipe = make_pipeline(predict=predict, image_tokens=9, vit=24)
    items = []
    for i, rec in enumerate(records):
        rec = copy.deepcopy(rec)
        rec.update(data_root=scene['root'], sample_idx=i)
        items.append(pipe(rec))
    return model.data_preprocessor(refvlm_collate(items), training=not predict)


def box_record(scene):
    rec = copy.deepcopy(scene['record'])
    rec['conversation'][1]['answer'] = [
        {'phrase': 'two squares', 'groups': [{'units': ['box'], 'n': 2, 'targets': [0, 1]}]},
        '.',
    ]
    return rec


def text_record(scene):
    rec = copy.deepcopy(scene['record'])
    rec['conversation'][1]['answer'] = 'Two squares.'
    return rec


def grads_missing(model):
    return [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]


def test_loss_terms_and_every_param_gets_grad(scene):
    model = build()
    data = batch(scene, model, [box_record(scene), text_record(scene)])
    losses = model(**data, mode='loss')
    assert set(losses) == {'loss_llm', 'loss_box_l1'}
    assert all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    assert grads_missing(model) == []


def test_text_only_batch_uses_fake_inputs(scene):
    model = build()
    data = batch(scene, model, [text_record(scene), text_record(scene)])
    losses = model(**data, mode='loss')
    assert set(losses) == {'loss_llm', 'loss_box_l1'}  # same keys every step
    assert losses['loss_box_l1'].item() == 0
    sum(losses.values()).backward()
    assert grads_missing(model) == []
    assert torch.count_nonzero(model.unit_decoders.box.head.weight.grad) == 0  # zero, but present


def all_units_model():
    from mmrefvlm.testing import tiny_decoder_cfg

    decoders = {}
    for unit in ('box', 'mask', 'keypoint', 'depth'):
        cfg = tiny_decoder_cfg(unit)
        for key in ('in_channels', 'pyramid_channels', 'clip_channels'):
            cfg.pop(key)  # RefVLM fills them from the LLM and the encoders
        cfg['dropout'] = 0.0 if 'dropout' in cfg else None
        decoders[unit] = {k: v for k, v in cfg.items() if v is not None}
    return build(
        unit_decoders=decoders,
        loss_weights=dict(llm=1.0, box=0.5, mask=0.5, keypoint=1.0, depth=1.0),
    )


def answer_record(scene, answer, prompts=()):
    rec = copy.deepcopy(scene['record'])
    rec['conversation'][1]['answer'] = answer
    rec['visual_prompts'] = list(prompts)
    if prompts:
        rec['conversation'][0]['content'] = 'What is at [VPT]?'
    return rec


MIXES = {
    'text_only': [[], []],
    'mask_only': [[{'phrase': 'it', 'groups': [{'units': ['mask'], 'n': 1, 'targets': [1]}]}]],
    'box_with_prompt': [
        [{'phrase': 'it', 'groups': [{'units': ['box'], 'n': 2, 'targets': [0, 1]}]}]
    ],
    'keypoint_depth': [
        [
            {
                'phrase': 'it',
                'groups': [
                    {'units': ['keypoint'], 'n': 1, 'targets': [0]},
                    {'units': ['depth'], 'n': 1, 'targets': [None]},
                ],
            }
        ]
    ],
}


@pytest.mark.parametrize('mix', sorted(MIXES))
def test_every_trainable_param_gets_grad_whatever_the_batch(scene, mix):
    model = all_units_model()
    records = []
    for answer in MIXES[mix]:
        prompts = [{'type': 'box', 'box': [4, 6, 14, 16]}] if mix == 'box_with_prompt' else []
        records.append(answer_record(scene, answer or 'Two squares.', prompts))
    losses = model(**batch(scene, model, records), mode='loss')
    sum(losses.values()).backward()
    assert grads_missing(model) == []
    keys = {k.split('_')[1] for k in losses if k != 'loss_llm'}
    assert keys == {'box', 'mask', 'keypoint', 'depth'}  # every step logs every unit
    active = {k.split('_')[1] for k, v in losses.items() if k != 'loss_llm' and v.item() != 0}
    expected = {
        'text_only': set(),
        'mask_only': {'mask'},
        'box_with_prompt': {'box'},
        'keypoint_depth': {'keypoint', 'depth'},
    }[mix]
    assert active == expected
    inactive = set(model.unit_decoders) - active
    for unit in inactive:  # inactive decoders: present but exactly zero gradients
        grads = [p.grad for p in model.unit_decoders[unit].parameters() if p.requires_grad]
        assert grads and all(torch.count_nonzero(g) == 0 for g in grads)


def test_gradient_checkpointing_same_loss(scene):
    records = [box_record(scene), text_record(scene)]
    plain = build()
    ckpt = build(gradient_checkpointing=True)
    ckpt.load_state_dict(plain.state_dict())
    plain.train(), ckpt.train()
    a = plain(**batch(scene, plain, records), mode='loss')
    b = ckpt(**batch(scene, ckpt, records), mode='loss')
    assert torch.allclose(sum(a.values()), sum(b.values()), atol=1e-5)
    sum(b.values()).backward()
    assert grads_missing(ckpt) == []


def test_misaligned_targets_raise(scene):
    model = build()
    data = batch(scene, model, [box_record(scene)])
    del data['data_samples'][0].gt_units.box
    with pytest.raises(ValueError, match='targets'):
        model(**data, mode='loss')


def test_build_errors():
    with pytest.raises(ValueError, match='no decoder'):
        build(loss_weights=dict(llm=1.0, mask=1.0))
    with pytest.raises(ValueError, match='key must equal its unit'):
        build(unit_decoders=dict(mask=TinyBox(32)))


def test_lora_trains_adapters_and_new_rows_only(scene):
    model = build(lora=dict(r=4, lora_alpha=8, target_modules=['q_proj', 'v_proj']))
    tok = build_tokenizer('demo')
    names = [n for n, p in model.llm.named_parameters() if p.requires_grad]
    assert names and all('lora_' in n or 'trainable_tokens' in n for n in names)
    emb = model.llm.get_input_embeddings()
    before = emb(torch.arange(len(tok))[None])[0].detach().clone()
    data = batch(scene, model, [box_record(scene)])
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1.0)
    sum(model(**data, mode='loss').values()).backward()
    opt.step()
    after = emb(torch.arange(len(tok))[None])[0].detach()
    changed = (after != before).any(1).nonzero().flatten().tolist()
    # only special-token rows can move; <REF> was in the answer, so its row did
    assert changed and set(changed) <= set(tok.ids.values()) and tok.ids.ref in changed


def fake_generation(model, token_lists, finished):
    width = max(len(t) for t in token_lists)
    pad = model.tokenizer.ids.pad
    tokens = torch.tensor([t + [pad] * (width - len(t)) for t in token_lists])
    b, d = tokens.shape[0], 32
    return GenerationOutput(
        tokens=tokens,
        lengths=torch.tensor([len(t) for t in token_lists]),
        states=torch.randn(b, width, d),
        emit_states=torch.randn(b, width, d),
        finished=torch.tensor(finished),
    )


@pytest.mark.parametrize(
    'text,finished,warning',
    [
        ('<Phrase>two squares</Phrase>(<Unit>box</Unit>[0]<REF>[1]<REF>).', True, None),
        ('<Phrase>two squares</Phrase>(<Unit>box</Unit>[0]<REF>[1]<', False, 'max_new_tokens'),
        ('<Phrase>x</Phrase>(<Unit></Unit>[0]<REF>) <REF>', True, 'no unit'),
        (
            '<Phrase>x</Phrase>(<Unit>box</Unit>' + ''.join(f'[{i}]<REF>' for i in range(9)) + ')',
            True,
            'capacity',
        ),
        ('<Phrase><Phrase>x</Phrase>(<Unit>box</Unit>[0]<REF>' * 20, False, 'max_new_tokens'),
    ],
)
def test_predict_never_raises_on_malformed_generation(scene, monkeypatch, text, finished, warning):
    model = build().eval()
    tok = model.tokenizer
    ids = tok.encode(text) + ([tok.ids.eos] if finished else [])
    monkeypatch.setattr(
        'mmrefvlm.models.refvlm.greedy_generate',
        lambda *a, **k: fake_generation(model, [ids, ids], [finished] * 2),
    )
    data = batch(scene, model, [box_record(scene), box_record(scene)], predict=True)
    out = model(**data, mode='predict')
    s = out[0]
    assert s.pred_text == tok.decode(ids[: len(ids) - int(finished)])
    n_box = sum(1 for u in s.pred_instances.units if u == 'box')
    assert n_box <= 4 and len(s.pred_instances.get('bboxes', ())) == n_box
    if warning is None:
        assert n_box == 2 and s.warnings == []
        assert s.pred_answer == [
            {'phrase': 'two squares', 'groups': [{'units': ['box'], 'n': 2}]},
            '.',
        ]
    else:
        assert any(warning in w for w in s.warnings), s.warnings


def test_predict_batch_matches_single(scene):
    model = build().eval()
    model.max_new_tokens = 6
    data2 = batch(scene, model, [box_record(scene), text_record(scene)], predict=True)
    data1 = batch(scene, model, [box_record(scene)], predict=True)
    a = model(**data2, mode='predict')[0]
    b = model(**data1, mode='predict')[0]
    assert a.pred_text == b.pred_text


def test_init_weights_reaches_every_decoder(monkeypatch):
    model = all_units_model()
    called = []
    for unit, dec in model.unit_decoders.items():
        orig = dec.init_weights
        monkeypatch.setattr(dec, 'init_weights', lambda u=unit, f=orig: (called.append(u), f()))
    model.init_weights()
    assert sorted(called) == ['box', 'depth', 'keypoint', 'mask']


def test_predict_static_and_dynamic_cache_agree(scene):
    model = build().eval()
    model.max_new_tokens = 6
    data = batch(scene, model, [box_record(scene), text_record(scene)], predict=True)
    model.generation_cache = 'dynamic'
    dyn = model(**data, mode='predict')
    model.generation_cache = 'static'
    sta = model(**data, mode='predict')
    assert [s.pred_text for s in sta] == [s.pred_text for s in dyn]
    with pytest.raises(ValueError, match='generation_cache'):
        build(generation_cache='paged')
