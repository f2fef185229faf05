# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
import pytest
import torch

from mmrefvlm.models.llms import build_causal_lm, resize_embeddings_mean
from mmrefvlm.registry import MODELS

TINY = dict(
    model_type='llama',
    vocab_size=300,
    hidden_size=32,
    intermediate_size=64,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
)


def test_tiny_config_resized_with_mean_rows(demo_tokenizer):
    m = build_causal_lm(config=TINY, tokenizer=demo_tokenizer)
    n = len(demo_tokenizer)
    emb = m.get_input_embeddings().weight
    assert emb.shape == (n, 32)
    assert torch.allclose(emb[300:], emb[:300].mean(0, keepdim=True).expand(n - 300, -1), atol=1e-6)
    out = m.get_output_embeddings().weight
    assert out.shape == (n, 32)
    assert torch.allclose(out[300:], out[:300].mean(0, keepdim=True).expand(n - 300, -1), atol=1e-6)
    assert m.config.pad_token_id == demo_tokenizer.ids.pad
    assert m.generation_config.eos_token_id == demo_tokenizer.ids.eos
    ids = torch.tensor([demo_tokenizer.encode('<Phrase>red</Phrase><REF>')])
    assert m(input_ids=ids).logits.shape == (1, ids.shape[1], n)


def test_registered_and_built_from_dict():
    m = MODELS.build(dict(type='HFCausalLM', config=TINY, tokenizer=dict(source='demo')))
    assert m.get_input_embeddings().weight.shape[0] > 300


def test_local_path_roundtrip(tmp_path, demo_tokenizer):
    m = build_causal_lm(config=TINY)
    m.save_pretrained(tmp_path)
    again = build_causal_lm(str(tmp_path), tokenizer=demo_tokenizer)
    assert torch.equal(again.get_input_embeddings().weight[:300], m.get_input_embeddings().weight)
    skeleton = build_causal_lm(str(tmp_path), load_weights=False)
    assert skeleton.config.hidden_size == 32


def test_resize_noop_and_errors():
    m = build_causal_lm(config=TINY)
    assert resize_embeddings_mean(m, 100) == 0
    with pytest.raises(ValueError, match='exactly one'):
        build_causal_lm()
    with pytest.raises(ValueError, match='model_type'):
        build_causal_lm(config=dict(hidden_size=4))
    with pytest.raises(ValueError, match='dtype'):
        build_causal_lm(config=TINY, torch_dtype='float8')


def test_quantization_needs_weights_and_bitsandbytes(tmp_path):
    import importlib.util

    with pytest.raises(ValueError, match='pretrained weights'):
        build_causal_lm(config=TINY, quantization='4bit')
    m = build_causal_lm(config=TINY)
    m.save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="'4bit' or '8bit'"):
        build_causal_lm(str(tmp_path), quantization='2bit')
    if importlib.util.find_spec('bitsandbytes') is None:
        with pytest.raises(ImportError, match='bitsandbytes'):
            build_causal_lm(str(tmp_path), quantization='4bit')
