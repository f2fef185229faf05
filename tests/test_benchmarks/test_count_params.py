# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""``tools/analysis/count_params.py``: the paper config builds on the meta device and its counts
equal the closed forms documented in docs/model_zoo.md."""

import importlib.util
import os.path as osp
import sys

import pytest
import torch

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def _load_tool():
    spec = importlib.util.spec_from_file_location(
        'count_params_tool', osp.join(ROOT, 'tools', 'analysis', 'count_params.py')
    )
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up there
    spec.loader.exec_module(mod)
    return mod


tool = _load_tool()


def test_closed_forms_hand_computed():
    # Llama-7B, vocabulary 32000: the well-known 6,738,415,616 (embeddings 2 x 131.07 M, 32 layers
    # of 4 x 4096^2 + 3 x 4096 x 11008 + 2 x 4096, final norm 4096).
    assert tool.llama_params(4096, 11008, 32, 32000) == 6_738_415_616
    assert tool.llama_params(4096, 11008, 32, 32000) == (
        2 * 32000 * 4096 + 32 * (4 * 4096**2 + 3 * 4096 * 11008 + 2 * 4096) + 4096
    )
    # LLaVA's projector 1024 -> 4096 -> 4096.
    assert tool.mlp_projector_params(1024, 4096) == 1024 * 4096 + 4096 + 4096 * 4096 + 4096
    # LoRA r=128 on all 7 linear layers of Llama-7B: 128 x (4 x 8192 + 2 x 15104 + 15104) x 32.
    assert (
        tool.lora_params(
            4096, 11008, 32, r=128, target_modules=list(tool.DEFAULT_LORA['target_modules'])
        )
        == 128 * (4 * 8192 + 3 * 15104) * 32
    )


@pytest.mark.parametrize(
    'cfg',
    [
        dict(
            model_type='llama',
            hidden_size=48,
            intermediate_size=80,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            vocab_size=101,
            tie_word_embeddings=False,
        ),
        dict(
            model_type='llama',
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=3,
            num_attention_heads=4,
            num_key_value_heads=4,
            vocab_size=57,
            tie_word_embeddings=True,
        ),
    ],
)
def test_llama_closed_form_matches_transformers(cfg):
    from mmrefvlm.models.llms import build_causal_lm

    with torch.device('meta'):
        model = build_causal_lm(config=cfg)
    ratio = cfg['num_key_value_heads'] / cfg['num_attention_heads']
    expected = tool.llama_params(
        cfg['hidden_size'],
        cfg['intermediate_size'],
        cfg['num_hidden_layers'],
        cfg['vocab_size'],
        kv_heads_ratio=ratio,
        tied=cfg['tie_word_embeddings'],
    )
    assert sum(p.numel() for p in model.parameters()) == expected


@pytest.fixture(scope='module')
def paper_model():
    model, done = tool.build_model(osp.join(ROOT, 'configs', 'refvlm', 'stage2.py'), meta=True)
    return model, done


def test_paper_config_builds_on_meta(paper_model):
    model, done = paper_model
    assert len(done) == 4  # LLM, CLIP, ConvNeXt, tokenizer folders are absent here
    assert {p.device.type for p in model.parameters()} == {'meta'}
    rows = {r.name: r for r in tool.count_modules(model)}
    # Vicuna-7B + 10 new token rows in the embedding and the LM head.
    assert rows['llm'].total == 6_738_415_616 + 2 * 10 * 4096
    # trainable LLM weights stay float32 under bf16 autocast (configs/_base_/models/refvlm_7b.py)
    assert rows['llm'].dtypes == {'float32': rows['llm'].total}
    # Frozen encoders, closed forms equal to the published sizes (CLIP ViT-L/14-336: 303.5 M;
    # ConvNeXt-L trunk: 196.2 M).
    assert rows['vision_encoder (CLIP-ViT)'].total == 303_507_456
    assert rows['vision_encoder (CLIP-ViT)'].trainable == 0
    assert rows['pyramid_encoder (ConvNeXt)'].total == 196_230_336
    assert rows['pyramid_encoder (ConvNeXt)'].trainable == 0
    assert rows['projector'].total == 20_979_712
    closed = tool.closed_forms(model)
    for name, value in closed.items():
        assert rows[name].total == value, name
    # The rows partition the model.
    parts = sum(r.total for n, r in rows.items() if n != 'total')
    assert parts == rows['total'].total == sum(p.numel() for p in model.parameters())
    # Table 13: total - backbone = 49 M; projector + decoders here: 48.3 M (within 2 %).
    extra = rows['projector'].total + rows['decoder: box'].total + rows['decoder: mask'].total
    assert abs(extra - 49e6) / 49e6 < 0.02


def test_substitution_keeps_existing_folders(tmp_path):
    cfg = dict(
        llm=dict(name_or_path=str(tmp_path), torch_dtype='bfloat16'),
        vision_encoder=dict(name_or_path=str(tmp_path / 'missing')),
        tokenizer=dict(source='demo'),
    )
    done = tool.substitute_missing_checkpoints(cfg, verbose=False)
    assert cfg['llm'] == dict(name_or_path=str(tmp_path), torch_dtype='bfloat16')
    assert 'config' in cfg['vision_encoder'] and 'name_or_path' not in cfg['vision_encoder']
    assert len(done) == 1


def test_substitution_takes_the_configs_architectures(tmp_path):
    llm = dict(model_type='qwen2', hidden_size=64)
    vit = dict(hidden_size=32, image_size=28, patch_size=14)
    cfg = dict(
        llm=dict(name_or_path=str(tmp_path / 'missing'), torch_dtype='bfloat16'),
        vision_encoder=dict(name_or_path=str(tmp_path / 'missing'), select_layer=-1),
        pyramid_encoder=dict(name_or_path=str(tmp_path / 'missing')),
        tokenizer=dict(source='demo'),
    )
    subs = dict(llm=llm, vision_encoder=vit)
    done = tool.substitute_missing_checkpoints(cfg, verbose=False, substitutes=subs)
    assert cfg['llm'] == dict(config=llm, torch_dtype='bfloat16', attn_implementation='sdpa')
    assert cfg['vision_encoder'] == dict(config=vit, select_layer=-1)
    assert cfg['pyramid_encoder']['config']['hidden_sizes'][-1] == 1536  # the default preset
    assert len(done) == 3 and 'meta_substitutes (qwen2)' in done[0]
    with pytest.raises(ValueError, match='projector'):
        tool.substitute_missing_checkpoints(dict(llm={}), substitutes=dict(projector={}))
