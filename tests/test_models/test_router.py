# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
import torch

from mmrefvlm.models.routers import LatentEmbeddingRouter, find_refs
from mmrefvlm.trp import build_answer

ANSWER = [
    {'phrase': 'two dogs', 'groups': [{'units': ['box'], 'n': 2}]},
    ' and ',
    {'phrase': 'a cat', 'groups': [{'units': ['box', 'mask'], 'n': 1}]},
    ', ',
    {'phrase': 'a cow', 'groups': [{'units': ['mask'], 'n': 0}]},
    '.',
]


def encode(tok, answer, prefix='Q: where? A: '):
    prompt = tok.encode(prefix)
    ans = tok.encode(build_answer(answer)) + [tok.ids.eos]
    ids = torch.tensor(prompt + ans)
    labels = torch.tensor([-100] * len(prompt) + ans)
    return ids, labels


def test_find_refs_units_from_own_triplet(demo_tokenizer):
    ids, labels = encode(demo_tokenizer, ANSWER)
    refs, warns, _ = find_refs(
        ids, demo_tokenizer, known_units={'box', 'mask'}, span_mask=labels != -100
    )
    assert not warns
    assert [r[1] for r in refs] == [('box',), ('box',), ('box', 'mask')]
    assert all(ids[p] == demo_tokenizer.ids.ref for p, *_ in refs)
    assert refs[0][2] == refs[1][2] != refs[2][2]  # same group for the two dogs
    assert [r[3] for r in refs] == ['two dogs', 'two dogs', 'a cat']


def test_unknown_unit_dropped_with_warning(demo_tokenizer):
    ids, labels = encode(demo_tokenizer, ANSWER)
    refs, warns, _ = find_refs(ids, demo_tokenizer, known_units={'box'}, span_mask=labels != -100)
    assert [r[1] for r in refs] == [('box',), ('box',), ('box',)]
    assert any('unknown_unit' in w for w in warns)


def test_router_packs_per_unit_and_masks_padding(demo_tokenizer):
    ids, labels = encode(demo_tokenizer, ANSWER)
    ids2, labels2 = encode(
        demo_tokenizer, [{'phrase': 'x', 'groups': [{'units': ['mask'], 'n': 1}]}]
    )
    refs = [
        find_refs(i, demo_tokenizer, known_units={'box', 'mask'}, span_mask=lab != -100)[0]
        for i, lab in ((ids, labels), (ids2, labels2))
    ]
    hidden = torch.randn(2, max(len(ids), len(ids2)), 8)
    out = LatentEmbeddingRouter()(hidden, refs, dict(box=10, mask=10))
    box, mask = out.queries['box'], out.queries['mask']
    assert box.embeds.shape == (2, 3, 8) and box.mask.tolist() == [[True] * 3, [False] * 3]
    assert box.group_ids.tolist() == [[0, 0, 1], [-1, -1, -1]]
    assert torch.equal(box.embeds[0, 2], hidden[0, refs[0][2][0]])
    assert torch.equal(box.embeds[1], torch.zeros(3, 8))
    assert mask.mask.tolist() == [[True], [True]]
    assert torch.equal(mask.embeds[1, 0], hidden[1, refs[1][0][0]])
    # emitting convention: the state one position earlier
    emit = LatentEmbeddingRouter(ref_position='emitting')(hidden, refs, dict(box=10, mask=10))
    assert torch.equal(emit.queries['box'].embeds[0, 0], hidden[0, refs[0][0][0] - 1])


def test_capacity_overflow_warns(demo_tokenizer):
    ids, labels = encode(demo_tokenizer, ANSWER)
    refs = [
        find_refs(ids, demo_tokenizer, known_units={'box', 'mask'}, span_mask=labels != -100)[0]
    ]
    out = LatentEmbeddingRouter()(torch.randn(1, len(ids), 4), refs, dict(box=2, mask=5))
    assert out.queries['box'].embeds.shape[1] == 2
    assert any('capacity' in w for w in out.warnings[0])


def test_multi_turn_answers_parsed_separately(demo_tokenizer):
    ids1, lab1 = encode(demo_tokenizer, [{'phrase': 'a', 'groups': [{'units': ['box'], 'n': 1}]}])
    ids2, lab2 = encode(
        demo_tokenizer,
        [{'phrase': 'b', 'groups': [{'units': ['box'], 'n': 1}]}],
        prefix=' Q: more? A: ',
    )
    ids, labels = torch.cat([ids1, ids2]), torch.cat([lab1, lab2])
    refs, warns, _ = find_refs(ids, demo_tokenizer, known_units={'box'}, span_mask=labels != -100)
    assert len(refs) == 2 and not warns
    assert refs[0][2] != refs[1][2]  # different answers -> different groups


def test_phrase_pooling_adds_mean_phrase_state(demo_tokenizer):
    ids, labels = encode(demo_tokenizer, ANSWER)
    refs = [
        find_refs(ids, demo_tokenizer, known_units={'box', 'mask'}, span_mask=labels != -100)[0]
    ]
    hidden = torch.randn(1, len(ids), 8)
    plain = LatentEmbeddingRouter()(hidden, refs, dict(box=10, mask=10)).queries['box']
    pooled = LatentEmbeddingRouter(phrase_pooling=True)(
        hidden, refs, dict(box=10, mask=10)
    ).queries['box']
    tokens = ids.tolist()
    for slot, (pos, _, _, phrase, span) in enumerate(refs[0]):
        s, e = span
        assert tokens[s] == demo_tokenizer.ids.phrase_start
        assert tokens[e] == demo_tokenizer.ids.phrase_end
        assert demo_tokenizer.decode(tokens[s + 1 : e]) == phrase
        exp = hidden[0, pos] + hidden[0, s + 1 : e].mean(0)
        assert torch.allclose(pooled.embeds[0, slot], exp, atol=1e-5)
        assert torch.equal(plain.embeds[0, slot], hidden[0, pos])
