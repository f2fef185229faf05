# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""RefVLM's extension points for extra inputs (input encoders at placeholder tokens) and for
rewriting reference states before routing (ref refiners)."""

import copy

import pytest
import torch
from mmengine.dataset import Compose
from torch import nn

from mmrefvlm.datasets import refvlm_collate
from mmrefvlm.datasets.transforms import (
    BuildUnitTargets,
    FormatConversation,
    LoadRecordImage,
    PackRefVLMInputs,
    PrepareImages,
)
from mmrefvlm.models.model_hooks import RefStateContext
from mmrefvlm.models.refvlm_utils import IGNORE_INDEX

from ..test_datasets.conftest import scene  # noqa: F401  (fixture)
from .test_refvlm import box_record, build, fake_generation, grads_missing

TOKENIZER = dict(source='demo', extra_tokens=['<toy>'])


class ToyEncoder(nn.Module):
    """Rows ``proj(sample.toy)``: (k, 3) per sample -> (k, 32)."""

    def __init__(self):
        super().__init__()
        self.proj = nn.Linear(3, 32)

    def forward(self, data_samples, *, visual, vision_encoder, projector):
        assert visual.clip.shape[0] == len(data_samples) and vision_encoder is not None
        rows = [s.toy for s in data_samples if 'toy' in s]
        if rows:
            values = self.proj(torch.cat(rows))
        else:  # no toy input in the batch: a fake row, sliced away, keeps proj in the graph
            values = self.proj(torch.zeros(1, 3))[:0]
        counts = torch.tensor([len(s.toy) if 'toy' in s else 0 for s in data_samples])
        return values, counts


def _batch(scene, model, specs, predict=False):
    """One record per spec ``(number of <toy> tokens, toy rows)``."""
    pipe = Compose(
        [
            LoadRecordImage(),
            PrepareImages(sizes=dict(vit=24, pyramid=32)),
            FormatConversation(
                TOKENIZER, chat_template='plain', num_image_tokens=9, cot=False, predict=predict
            ),
            BuildUnitTargets(dict(box=dict(type='BoxTarget'))),
            PackRefVLMInputs(),
        ]
    )
    items = []
    for i, (n_tok, rows) in enumerate(specs):
        rec = copy.deepcopy(box_record(scene))
        rec['conversation'][0] = {'role': 'user', 'content': 'Find ' + '<toy>' * n_tok + ' here.'}
        rec.update(data_root=scene['root'], sample_idx=i)
        item = pipe(rec)
        if rows is not None:
            item['data_samples'].toy = rows
        items.append(item)
    return model.data_preprocessor(refvlm_collate(items), training=not predict)


def test_input_encoder_rows_replace_the_placeholders(scene):
    model = build(tokenizer=TOKENIZER, input_encoders={'<toy>': ToyEncoder()})
    rows = [torch.randn(2, 3), None, torch.randn(1, 3)]
    data = _batch(scene, model, [(2, rows[0]), (0, None), (1, rows[2])])
    inputs, samples = data['inputs'], data['data_samples']
    vis, tokens = model.encode_images(inputs, samples)
    embeds, _ = model.embed_inputs(inputs, vis, tokens, data_samples=samples)
    pos = inputs['input_ids'] == model.tokenizer.ids['<toy>']
    want = model.input_encoders['<toy>'].proj(torch.cat([rows[0], rows[2]]))
    torch.testing.assert_close(embeds[pos], want)
    plain = model.llm.get_input_embeddings()(inputs['input_ids'])
    torch.testing.assert_close(
        embeds[~pos & (inputs['input_ids'] != model.tokenizer.ids.image)],
        plain[~pos & (inputs['input_ids'] != model.tokenizer.ids.image)],
    )
    sum(model(**data, mode='loss').values()).backward()
    assert grads_missing(model) == []
    assert model.input_encoders['<toy>'].proj.weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match='<toy>'):  # 2 placeholders, 1 row
        bad = _batch(scene, model, [(2, torch.randn(1, 3))])
        model(**bad, mode='loss')
    with pytest.raises(ValueError, match='special token'):
        build(input_encoders={'<toy>': ToyEncoder()})  # the demo tokenizer has no <toy>


def test_input_encoder_params_in_the_graph_without_inputs(scene):
    model = build(tokenizer=TOKENIZER, input_encoders={'<toy>': ToyEncoder()})
    data = _batch(scene, model, [(0, None), (0, None)])
    sum(model(**data, mode='loss').values()).backward()
    assert grads_missing(model) == []  # zero gradients, but present (DDP-safe)
    assert model.input_encoders['<toy>'].proj.weight.grad.abs().sum() == 0


class ShiftRefiner:
    """Adds ``delta`` to the state each router reads (the ``<REF>`` position) and records."""

    def __init__(self, delta=1.0):
        self.delta, self.calls, self.attached = delta, [], None

    def attach(self, llm):
        self.attached = llm

    def __call__(self, hidden, refs, context):
        self.calls.append((hidden.detach().clone(), refs, context))
        out = hidden.clone()
        for b, sample_refs in enumerate(refs):
            for pos in sample_refs:
                out[b, pos] = out[b, pos] + self.delta
        return out


def test_ref_refiner_rewrites_routed_states_only(scene):
    refiner = ShiftRefiner(3.0)
    model = build(ref_refiner=refiner)
    assert refiner.attached is model.llm
    plain = build()
    data = _batch(scene, plain, [(0, None), (0, None)])
    losses = model(**data, mode='loss')
    torch.testing.assert_close(losses['loss_llm'], plain(**data, mode='loss')['loss_llm'])
    hidden, refs, ctx = refiner.calls[-1]
    assert isinstance(ctx, RefStateContext) and ctx.offset == 0
    assert torch.equal(ctx.answer_mask, data['inputs']['labels'] != IGNORE_INDEX)
    assert torch.equal(ctx.key_mask, data['inputs']['attention_mask'].bool())
    routing = model._route_labels(data['inputs'], hidden)
    q = routing.queries['box']
    pos = refs
    torch.testing.assert_close(q.embeds[0, :2], hidden[0, pos[0]] + 3.0)
    with pytest.raises(TypeError, match='callable'):
        build(ref_refiner=3)


def test_ref_refiner_in_predict_gets_generation_context(scene, monkeypatch):
    refiner = ShiftRefiner(0.0)
    model = build(ref_refiner=refiner).eval()
    tok = model.tokenizer
    text = '<Phrase>two squares</Phrase>(<Unit>box</Unit>[0]<REF>[1]<REF>).'
    ids = [tok.encode(text) + [tok.ids.eos], tok.encode('No.') + [tok.ids.eos]]
    gen = fake_generation(model, ids, [True, True])
    monkeypatch.setattr('mmrefvlm.models.refvlm.greedy_generate', lambda *a, **k: gen)
    data = _batch(scene, model, [(0, None), (0, None)], predict=True)
    model(**data, mode='predict')
    hidden, refs, ctx = refiner.calls[-1]
    prompt = data['inputs']['input_ids'].shape[1]
    assert ctx.offset == prompt - 1 and hidden.shape[1] == gen.tokens.shape[1] + 1
    assert ctx.answer_mask[1].tolist() == [False] + [True] * len(ids[1]) + [False] * (
        gen.tokens.shape[1] - len(ids[1])
    )
    assert ctx.key_mask.shape == (2, prompt + gen.tokens.shape[1])
    assert all(hidden.shape[1] > p >= 1 for p in refs[0]) and refs[1] == []


def test_ref_refiner_gets_reference_token_positions_with_emitting_router(scene):
    # With ref_position='emitting' the router reads the state before each <REF>; the refiner is
    # still given the <REF> tokens' own positions, in training as in predict (the documented
    # contract), so a refiner that shifts by itself (AnyRef's) rewrites the state that is read.
    refiner = ShiftRefiner(0.0)
    model = build(
        ref_refiner=refiner, router=dict(type='LatentEmbeddingRouter', ref_position='emitting')
    )
    data = _batch(scene, model, [(0, None), (0, None)])
    model(**data, mode='loss')
    _, refs, _ = refiner.calls[-1]
    ids = data['inputs']['input_ids']
    ref_id = model.tokenizer.ids.ref
    for b, positions in enumerate(refs):
        expected = [p for p in range(ids.shape[1]) if ids[b, p] == ref_id]
        assert positions == expected and expected
