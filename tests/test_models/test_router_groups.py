# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""Group identity end to end: record -> pipeline -> RefVLM.loss -> router -> decoder.

A two-turn conversation whose phrases have several groups (a box group and a mask group on one
phrase, a ``box,mask`` group, an ``n = 0`` group) is batched with a one-turn sample. The decoders
record what ``RefVLM`` hands them. The router's group ids must partition the ``<REF>`` tokens
exactly as the data pipeline's do, across units and across the answers of the conversation, and
the grouped matcher must then undo a shuffle of the targets inside each group.
"""

import copy

import pytest
import torch
from mmengine.structures import InstanceData
from torch import nn

from mmrefvlm.datasets import refvlm_collate
from mmrefvlm.models.matchers import box_group_costs, flat_group_keys, match_in_groups
from mmrefvlm.models.routers import LatentEmbeddingRouter, find_refs
from mmrefvlm.models.unit_decoders.base import BaseVisualUnitDecoder
from mmrefvlm.models.unit_decoders.utils import xyxy_to_cxcywh
from mmrefvlm.trp import build_answer

from ..test_datasets.conftest import scene  # noqa: F401  (fixture)
from ..test_datasets.test_pipeline import TARGETS
from .test_refvlm import build


class _Recording(BaseVisualUnitDecoder):
    """Records the queries and samples ``RefVLM.loss`` passes; its loss is 0 x outputs."""

    def __init__(self, in_channels=32):
        super().__init__(in_channels, num_queries=8)
        self.head = nn.Linear(in_channels, 1)
        self.calls = []

    def forward(self, q, vis):
        return dict(out=self.head(q.embeds))

    def loss(self, q, vis, samples):
        if q.mask.any():
            self.calls.append((q, samples))
        return {f'loss_{self.unit}_zero': self(q, vis)['out'].sum() * 0.0}

    def predict(self, q, vis, samples, rescale=True):
        return [InstanceData(scores=torch.ones(int(m.sum()))) for m in q.mask]


class _Box(_Recording):
    unit = 'box'


class _Mask(_Recording):
    unit = 'mask'


def _group(units, targets):
    return {'units': units, 'n': len(targets), 'targets': targets}


TURN_1 = [{'phrase': 'two squares', 'groups': [_group(['box'], [1, 0]), _group(['mask'], [1])]}]
TURN_2 = [
    {'phrase': 'the red one', 'groups': [_group(['box', 'mask'], [0])]},
    ' beside ',
    {'phrase': 'a green one', 'groups': [_group(['mask'], [])]},  # n = 0: no <REF>
    ' and ',
    {'phrase': 'both', 'groups': [_group(['box'], [0, 1])]},
    '.',
]


def _two_turn_record(scene):
    rec = copy.deepcopy(scene['record'])
    rec['conversation'] = [
        {'role': 'user', 'content': 'Where are the squares?'},
        {'role': 'assistant', 'answer': TURN_1},
        {'role': 'user', 'content': 'And the red one?'},
        {'role': 'assistant', 'answer': TURN_2},
    ]
    return rec


def _batch(scene, model, records):
    from mmengine.dataset import Compose

    from mmrefvlm.datasets.transforms import (
        BuildUnitTargets,
        FormatConversation,
        LoadRecordImage,
        PackRefVLMInputs,
        PrepareImages,
    )

    pipe = Compose(
        [
            LoadRecordImage(),
            PrepareImages(sizes=dict(vit=24, pyramid=32)),
            # the defaults users get: VD-CoT before every answer, the vicuna template
            FormatConversation(dict(source='demo'), num_image_tokens=9),
            BuildUnitTargets({u: TARGETS[u] for u in ('box', 'mask')}),
            PackRefVLMInputs(),
        ]
    )
    items = []
    for i, rec in enumerate(records):
        rec = copy.deepcopy(rec)
        rec.update(data_root=scene['root'], sample_idx=i)
        items.append(pipe(rec))
    return model.data_preprocessor(refvlm_collate(items), training=True)


def _canonical(pairs):
    """Relabel group ids by first appearance, so two numberings of one partition compare equal."""
    names = {}
    return [names.setdefault(g, len(names)) for g in pairs]


@pytest.fixture
def routed(scene):
    model = build(unit_decoders=dict(box=_Box(), mask=_Mask()), loss_weights=dict(llm=1.0))
    data = _batch(scene, model, [_two_turn_record(scene), scene['record']])
    model(**data, mode='loss')
    box, mask = model.unit_decoders.box.calls, model.unit_decoders.mask.calls
    assert len(box) == len(mask) == 1  # one call each, with both samples
    return dict(box=box[0], mask=mask[0])


def test_router_groups_span_units_and_turns(routed):
    (box_q, samples), (mask_q, _) = routed['box'], routed['mask']
    # Router numbering: (answer, triplet, group) in <REF> order. Sample 0: turn 1 box group 0,
    # turn 1 mask group 1, turn 2 'the red one' (box and mask) 2, turn 2 'both' 3. The n = 0
    # group has no <REF>. Sample 1 (scene record): 'two squares' 0, 'the red one' 1.
    assert box_q.group_ids.tolist() == [[0, 0, 2, 3, 3], [0, 0, 1, -1, -1]]
    assert mask_q.group_ids.tolist() == [[1, 2], [1, -1]]
    assert box_q.mask.tolist() == [[True] * 5, [True, True, True, False, False]]
    # The targets handed over are those of the refs, in <REF> order, across both turns.
    assert samples[0].gt_units.box.instance_ids.tolist() == [1, 0, 0, 0, 1]
    assert samples[0].gt_units.mask.instance_ids.tolist() == [1, 0]


def test_router_and_pipeline_partition_refs_alike(routed):
    (box_q, samples), (mask_q, _) = routed['box'], routed['mask']
    for b, sample in enumerate(samples):
        routed_ids, pipeline_ids = [], []
        for unit, q in (('box', box_q), ('mask', mask_q)):
            routed_ids += q.group_ids[b][q.mask[b]].tolist()
            pipeline_ids += sample.gt_units.get(unit).group_ids.tolist()
        assert _canonical(routed_ids) == _canonical(pipeline_ids), b


def test_grouped_matcher_undoes_a_shuffle_inside_router_groups(routed):
    box_q, samples = routed['box']
    keys = flat_group_keys(box_q.group_ids, box_q.mask)
    targets = torch.cat([s.gt_units.box.bboxes for s in samples])  # (M, 4) xyxy, <REF> order
    # Reverse the predictions inside every group (a pair: swapped; a single: kept).
    perm = torch.arange(len(keys))
    for key in keys.unique():
        items = (keys == key).nonzero().flatten()
        perm[items] = items.flip(0)
    preds = xyxy_to_cxcywh(targets)[perm]
    pred_inds, tgt_inds = match_in_groups(box_group_costs, preds, xyxy_to_cxcywh(targets), keys)
    assert torch.equal(tgt_inds[pred_inds.argsort()], perm)
    assert len(keys.unique()) == 5  # groups never merge across samples or turns


def test_capacity_exactly_full_drops_nothing(demo_tokenizer):
    answer = build_answer([{'phrase': 'three', 'groups': [{'units': ['box'], 'n': 3}]}])
    ids = torch.tensor(demo_tokenizer.encode(answer))
    refs = [find_refs(ids, demo_tokenizer, known_units={'box'})[0]]
    hidden = torch.randn(1, len(ids), 4)
    full = LatentEmbeddingRouter()(hidden, refs, dict(box=3))
    assert full.queries['box'].mask.tolist() == [[True] * 3] and full.warnings == [[]]
    over = LatentEmbeddingRouter()(hidden, refs, dict(box=2))
    assert over.queries['box'].mask.tolist() == [[True] * 2] and len(over.warnings[0]) == 1
