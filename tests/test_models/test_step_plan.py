# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""The host-side plan of a RefVLM step: placeholder / LM positions, prompt layout, label refs,
attention mask, all equal to what the device tensors give."""

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mmrefvlm.models.generation import split_llm
from mmrefvlm.models.host_index import IndexPack
from mmrefvlm.models.matchers import group_slots
from mmrefvlm.models.prompt_encoders.mask_guided_aggregation import block_one_hot
from mmrefvlm.models.refvlm_loss import label_refs, llm_attention_mask
from mmrefvlm.models.step_plan import TokenPlan
from mmrefvlm.structures import HostBatch
from mmrefvlm.trp import find_refs

from ..test_datasets.conftest import scene  # noqa: F401  (fixture)
from .test_refvlm import answer_record, batch, build
from .test_sync_free_loss import MIXED, PAIR_AND_MULTI_UNIT, PROMPT, text_record


def mixed_batch(scene, model, predict=False):
    recs = [
        answer_record(scene, PAIR_AND_MULTI_UNIT, PROMPT),
        text_record(scene, image=False),
        answer_record(scene, MIXED),
    ]
    if predict:
        recs[1] = answer_record(scene, MIXED)
    return batch(scene, model, recs, predict=predict)


def test_host_batch_equals_device_tensors(scene):
    model = build()
    for predict in (False, True):  # right and left padding
        data = mixed_batch(scene, model, predict)
        host, back = data['inputs']['host'], HostBatch.from_inputs(data['inputs'])
        for field in ('input_ids', 'labels', 'lengths', 'offsets', 'has_image', 'prompt_counts'):
            assert np.array_equal(getattr(host, field), getattr(back, field)), field


def test_token_plan_positions(scene):
    model = build()
    data = mixed_batch(scene, model)
    inputs, ids = data['inputs'], model.tokenizer.ids
    pack = IndexPack()
    plan = TokenPlan(inputs['host'], ids.image, ids.vpt, pack).bind(pack.to('cpu'))
    input_ids, labels = inputs['input_ids'], inputs['labels']
    flat = torch.arange(input_ids.numel()).view_as(input_ids)
    assert plan.image_pos.tolist() == flat[input_ids == ids.image].tolist()
    assert plan.vpt_pos.tolist() == flat[input_ids == ids.vpt].tolist()
    assert plan.image_counts.tolist() == (input_ids == ids.image).sum(1).tolist()
    assert not plan.all_images and plan.image_index.tolist() == [0, 2]
    sel = labels[:, 1:] != -100
    assert plan.lm_targets.tolist() == labels[:, 1:][sel].tolist()
    hidden = torch.randn(*input_ids.shape, 4)
    picked = hidden.flatten(0, 1)[plan.lm_index]
    assert torch.equal(picked, hidden[:, :-1][sel])
    ref = group_slots(inputs['prompt_batch_idx'])
    assert plan.prompt_slots.sizes.tolist() == ref.sizes.tolist()
    assert plan.prompt_slots.slot_inds.tolist() == ref.slot_inds.tolist()
    assert plan.prompt_slots.keys.tolist() == ref.keys.tolist()
    assert plan.has_padding and plan.num_lm == int(sel.sum())
    with pytest.raises(ValueError, match='placeholder tokens per sample'):
        plan.check_counts('<image>', plan.image_counts, plan.image_counts + 1)


@pytest.mark.parametrize('left_padding', [False, True])
def test_label_refs_from_pipeline_equal_parsing_the_batch(scene, left_padding):
    model = build()
    if left_padding:  # training samples padded left: the pipeline's positions get shifted
        data = _left_padded(scene, model)
        assert data['inputs']['host'].offsets.any()
    else:
        data = mixed_batch(scene, model)
    host, samples = data['inputs']['host'], data['data_samples']
    known = {'box'}
    got = label_refs(host, samples, model.tokenizer, known)
    assert any(got)
    bare = [copy.deepcopy(s) for s in samples]
    for s in bare:
        del s.label_refs
    assert got == label_refs(host, bare, model.tokenizer, known)
    for b, refs in enumerate(got):
        expect = find_refs(
            host.input_ids[b], model.tokenizer, known_units=known, span_mask=host.labels[b] != -100
        )[0]
        assert refs == expect


def _left_padded(scene, model):
    from mmrefvlm.datasets import refvlm_collate

    from ..test_datasets.test_pipeline import make_pipeline

    pipe = make_pipeline(image_tokens=9, vit=24)
    items = []
    recs = [answer_record(scene, PAIR_AND_MULTI_UNIT, PROMPT), answer_record(scene, MIXED)]
    for i, rec in enumerate(recs):
        rec = copy.deepcopy(rec)
        rec.update(data_root=scene['root'], sample_idx=i)
        items.append(pipe(rec))
    return model.data_preprocessor(refvlm_collate(items), training=False)


def test_prompt_encoder_with_planned_slots_is_identical():
    from mmrefvlm.models.prompt_encoders import MaskGuidedAggregation

    enc = MaskGuidedAggregation(k=3)
    feats, masks = torch.randn(4, 8, 6, 6), torch.rand(5, 12, 12) > 0.5
    bidx = torch.tensor([0, 0, 2, 3, 3])
    planned = enc(feats, masks, bidx, slots=group_slots(bidx))
    assert torch.equal(planned, enc(feats, masks, bidx))
    blocks = block_one_hot(6, 7, 3)
    rows = torch.div(torch.arange(6) * 3, 6, rounding_mode='floor')
    cols = torch.div(torch.arange(7) * 3, 7, rounding_mode='floor')
    old = F.one_hot((rows[:, None] * 3 + cols[None, :]).flatten(), 9).T.float()
    assert torch.equal(blocks, old)


@pytest.mark.parametrize('impl', ['sdpa', 'eager'])
def test_llm_attention_mask_gives_the_same_hidden_states(scene, impl):
    model = build()
    model.llm.config._attn_implementation = impl
    data = mixed_batch(scene, model)
    decoder, _, _ = split_llm(model.llm)
    ids, mask = data['inputs']['input_ids'], data['inputs']['attention_mask']
    embeds = model.llm.get_input_embeddings()(ids)
    with torch.no_grad():
        ref = decoder(inputs_embeds=embeds, attention_mask=mask).last_hidden_state
        four_d = llm_attention_mask(model.llm, embeds, mask, has_padding=True)
        assert four_d is not None and four_d.dim() == 4
        got = decoder(inputs_embeds=embeds, attention_mask=four_d, use_cache=False)
        assert torch.equal(got.last_hidden_state, ref)
        full = torch.ones_like(mask)
        ref = decoder(inputs_embeds=embeds, attention_mask=full).last_hidden_state
        assert llm_attention_mask(model.llm, embeds, full, has_padding=False) is None
        got = decoder(inputs_embeds=embeds, attention_mask=None, use_cache=False)
        assert torch.equal(got.last_hidden_state, ref)
