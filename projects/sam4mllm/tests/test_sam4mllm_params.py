# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""The paper-scale SAM4MLLM-7B configs build on the meta device with Qwen-VL-7B-Chat's size, and
the Qwen-VL resampler they use works as ``RefVLM``'s projector.

Published sizes (Qwen-VL paper, Table 1): vision encoder ViT-bigG 1.9 B, VL adapter 0.08 B, LLM
Qwen-7B 7.7 B, total 9.6 B (the three rounded parts sum to 9.68 B). SAM4MLLM's SAM,
EfficientViT-SAM-XL1, cannot be built with transformers; the configs use SAM ViT-H, compared
with the SAM paper's 636 M (a 632 M image encoder + ~4 M prompt encoder and mask decoder). No
published figure counts LoRA (r=256 on every linear layer of the LLM here: 639.6 M), so it is
checked against its closed form and left out of the comparison.
"""

import importlib.util
import math
import os.path as osp
import sys

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope

from mmrefvlm.datasets import refvlm_collate
from mmrefvlm.registry import DATASETS, MODELS
from mmrefvlm.testing.tool_helpers import demo_data_root
from projects.sam4mllm.sam4mllm_seg import CrossAttnResampler, sincos_2d

REPO = osp.dirname(osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))
QWEN_VL = dict(vit=1.9e9, adapter=0.08e9, llm=7.7e9, total=9.6e9)
SAM_VIT_H = 0.636e9


def _tool():
    spec = importlib.util.spec_from_file_location(
        'count_params_sam4mllm', osp.join(REPO, 'tools', 'analysis', 'count_params.py')
    )
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


def _resampler_params(kv: int, d: int, queries: int) -> int:
    """Queries, bias-free kv projection, two LayerNorms, multi-head attention (q/k/v/o with
    biases), output LayerNorm, bias-free output projection."""
    return queries * d + kv * d + 2 * 2 * d + (4 * d * d + 4 * d) + 2 * d + d * d


@pytest.mark.parametrize('variant', ['7b', 'pqpp_7b'])
def test_paper_scale_builds_on_meta_with_qwen_vl_size(variant):
    tool = _tool()
    config = osp.join(REPO, 'projects', 'sam4mllm', 'configs', f'sam4mllm_{variant}.py')
    model, done = tool.build_model(config, meta=True)
    assert model.variant == ('ppg' if variant == '7b' else 'pqpp')
    # no weights here: the config's own architectures stand in for its missing folders
    assert any(d.startswith('sam.checkpoint') for d in done)
    assert any(d.startswith('llm:') and 'meta_substitutes (qwen2)' in d for d in done)
    assert any(d.startswith('vision_encoder:') and 'meta_substitutes' in d for d in done)
    assert model.llm.get_base_model().config.model_type == 'qwen2'
    rows = {r.name: r for r in tool.count_modules(model)}
    llm_lora = sum(p.numel() for n, p in model.llm.named_parameters() if 'lora_' in n)
    # LoRA r=256 on q, k, v, o (4096 -> 4096) and gate, up (4096 -> 11008), down (11008 -> 4096)
    assert llm_lora == 32 * 256 * (4 * 8192 + 3 * (4096 + 11008))
    llm = rows['llm'].frozen  # the base LLM: everything but LoRA and the new-token deltas
    vit, adapter = rows['vision_encoder (CLIP-ViT)'].total, rows['projector'].total
    assert abs(llm - QWEN_VL['llm']) / QWEN_VL['llm'] < 0.01, llm
    mllm = llm + vit + adapter
    assert abs(mllm - QWEN_VL['total']) / QWEN_VL['total'] < 0.01, mllm
    # the ViT is OpenCLIP's ViT-bigG/14 at 448 px in CLIP's layout, exactly; 3 % under the
    # paper's rounded 1.9 B
    assert vit == tool.clip_vit_params(1664, 8192, 48, 448, 14) == 1_844_055_296
    assert abs(vit - QWEN_VL['vit']) / QWEN_VL['vit'] < 0.035
    # the adapter: its cross-attention block (75.0 M) rounds to Table 1's 0.08 B, just (the
    # printed figure covers 75-85 M); the LayerNorm + 4096 x 4096 projection after it make the
    # total 91.8 M
    assert adapter == _resampler_params(1664, 4096, 256) == 91_791_360
    block = adapter - (4096 * 4096 + 2 * 4096)
    assert QWEN_VL['adapter'] - 0.005e9 <= block < QWEN_VL['adapter'] + 0.005e9, block
    assert abs(rows['sam'].total - SAM_VIT_H) / SAM_VIT_H < 0.01, rows['sam'].total
    assert rows['total'].total == mllm + rows['llm'].trainable + rows['sam'].total
    # trainable: LoRA (+ peft's token deltas) and the resampler; the ViT, the base LLM and SAM
    # are frozen
    assert rows['projector'].trainable == adapter
    assert rows['vision_encoder (CLIP-ViT)'].trainable == rows['sam'].trainable == 0
    assert llm_lora <= rows['llm'].trainable < llm_lora + 2 * 4096 * len(model.tokenizer)
    assert model.vision_encoder.num_tokens == 32 * 32 and model.projector.num_queries == 256


def test_resampler_shapes_positions_and_errors():
    torch.manual_seed(0)
    r = CrossAttnResampler(16, 32, num_queries=4, head_dim=8).eval()
    x = torch.randn(2, 9, 16)
    out = r(x)
    assert out.shape == (2, 4, 32)
    assert r(torch.randn(3, 2, 16, 16)).shape == (3, 2, 4, 32)  # any square grid, lead dims kept
    torch.testing.assert_close(r(x[:1]), out[:1])  # samples are independent
    # the key grid carries 2-D positions: moving the patches changes the tokens
    assert not torch.allclose(r(x.flip(1)), out, atol=1e-4)
    assert sum(p.numel() for p in r.parameters()) == _resampler_params(16, 32, 4)
    assert not any(n == 'query_pos' for n, _ in r.named_parameters())  # fixed code: a buffer
    with pytest.raises(ValueError, match='square'):
        r(torch.randn(1, 8, 16))
    with pytest.raises(ValueError, match='square'):
        CrossAttnResampler(16, 32, num_queries=5, head_dim=8)
    with pytest.raises(ValueError, match='head_dim'):
        CrossAttnResampler(16, 30, num_queries=4, head_dim=8)


def test_sincos_2d_encodes_row_and_column():
    code = sincos_2d(3, 8)
    assert code.shape == (9, 8)
    # row-major: entries 0..2 share row 0 (first half), entries 0, 3, 6 share column 0
    torch.testing.assert_close(code[1, :4], code[0, :4])
    torch.testing.assert_close(code[3, 4:], code[0, 4:])
    assert not torch.allclose(code[1, 4:], code[0, 4:])
    torch.testing.assert_close(code[0], torch.tensor([0.0, 0.0, 1.0, 1.0] * 2))
    torch.testing.assert_close(code[4, 0], torch.tensor(math.sin(1.0)))
    with pytest.raises(ValueError, match='divisible by 4'):
        sincos_2d(2, 6)


def test_resampler_as_projector_trains_with_the_ce():
    """The tiny PPG demo with the resampler as its projector: 64 patch tokens -> 64 queries (the
    pipeline's image-token count), CE gradients reach the queries, SAM gets none."""
    init_default_scope('mmrefvlm')
    cfg = Config.fromfile(
        osp.join(REPO, 'projects', 'sam4mllm', 'configs', 'sam4mllm_ppg_tiny_demo.py')
    )
    cfg.model.sam.checkpoint = None
    cfg.model.projector = dict(
        type='CrossAttnResampler', num_queries=cfg.num_image_tokens, head_dim=32
    )
    ds = cfg.train_dataloader.dataset.datasets[0]
    ds.data_root = demo_data_root()
    ds.pipeline[2]['labels'] = None
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    assert isinstance(model.projector, CrossAttnResampler)
    train = DATASETS.build(ds)
    model.train()
    batch = model.data_preprocessor(refvlm_collate([train[0], train[1]]), True)
    losses = model(**batch, mode='loss')
    assert set(losses) == {'loss_llm'} and torch.isfinite(losses['loss_llm'])
    losses['loss_llm'].backward()
    assert model.projector.query.grad is not None and model.projector.query.grad.abs().sum() > 0
    assert model.projector.kv_proj.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in model.sam.parameters())
