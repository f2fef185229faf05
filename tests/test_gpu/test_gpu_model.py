# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""RefVLM on CUDA, in process: CPU/GPU parity of greedy ``predict``, LoRA + gradient
checkpointing + bf16 training, and QLoRA (4-bit NF4 base weights through bitsandbytes).

The model and batches come from ``tests/data/configs/tiny_stage2_gpu.py`` on the generated demo
data (box, mask and keypoint decoders)."""

from __future__ import annotations

import copy

import pytest
import torch
from mmengine.registry import init_default_scope

from mmrefvlm.apis import load_config
from mmrefvlm.datasets import refvlm_collate
from mmrefvlm.registry import DATASETS, MODELS
from tests.test_reliability.conftest import CONFIGS

pytestmark = pytest.mark.gpu

GPU_CFG = str(CONFIGS / 'tiny_stage2_gpu.py')


@pytest.fixture
def cfg(demo_cwd, monkeypatch):
    monkeypatch.chdir(demo_cwd)  # the config reads demo_data/ relative to the working directory
    init_default_scope('mmrefvlm')
    return load_config(GPU_CFG)


def build_model(cfg, **overrides):
    model_cfg = copy.deepcopy(cfg.model)
    model_cfg.update(overrides)
    torch.manual_seed(0)
    return MODELS.build(model_cfg)


def raw_batch(cfg, split: str, n: int, start: int = 0) -> dict:
    dataset = DATASETS.build(cfg[f'{split}_dataloader'].dataset)
    return refvlm_collate([dataset[(start + i) % len(dataset)] for i in range(n)])


def unit_batch(cfg, n: int) -> dict:
    """``n`` training samples of the unit tasks (rec, res, ig_keypoint: every decoder gets
    queries), from the ConcatDataset's last three datasets."""
    dataset = DATASETS.build(cfg.train_dataloader.dataset)
    start = sum(len(d) for d in dataset.datasets[:3])
    return refvlm_collate([dataset[start + (i % (len(dataset) - start))] for i in range(n)])


def test_greedy_predict_on_cuda_matches_cpu(cfg, no_tf32, gpu_report):
    model = build_model(cfg, max_new_tokens=24).eval()
    gpu = copy.deepcopy(model).cuda().eval()
    data = raw_batch(cfg, 'test', 3)
    out_cpu = model.predict(**model.data_preprocessor(copy.deepcopy(data), False))
    out_gpu = gpu.predict(**gpu.data_preprocessor(copy.deepcopy(data), False))
    tok = model.tokenizer
    n_tokens = 0
    for a, b in zip(out_cpu, out_gpu, strict=True):
        ids_a, ids_b = tok.encode(a.pred_text), tok.encode(b.pred_text)
        assert ids_a == ids_b, (a.pred_text, b.pred_text)
        n_tokens += len(ids_a)
        assert a.pred_instances.units == b.pred_instances.units
        for key in ('bboxes', 'keypoints'):
            if key in a.pred_instances:
                torch.testing.assert_close(
                    b.pred_instances[key].cpu(), a.pred_instances[key], atol=1e-2, rtol=1e-3
                )
    assert n_tokens > 0, 'the random model generated nothing: the comparison would be vacuous'
    gpu_report('predict_parity', generated_tokens=n_tokens)


class _CountCalls:
    """Counts calls of a module's ``forward`` (wrapped, not hooked: the checkpoint recompute runs
    without module hooks)."""

    def __init__(self, module: torch.nn.Module) -> None:
        self.n, forward = 0, module.forward

        def counted(*args, **kwargs):
            self.n += 1
            return forward(*args, **kwargs)

        module.forward = counted


def _train(model, data, steps: int, lr: float = 3e-3) -> list[float]:
    """AdamW steps on one batch under bf16 autocast; the total loss of each step."""
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr)
    losses = []
    for _ in range(steps):
        batch = model.data_preprocessor(copy.deepcopy(data), True)
        with torch.autocast('cuda', dtype=torch.bfloat16):
            loss = sum(model(**batch, mode='loss').values())
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        losses.append(float(loss))
    return losses


def _lora_cfg():
    return dict(r=8, lora_alpha=16, lora_dropout=0.0, target_modules=['q_proj', 'v_proj'])


def test_lora_gradient_checkpointing_bf16(cfg):
    llm = copy.deepcopy(cfg.model.llm)
    llm['torch_dtype'] = 'bfloat16'
    model = build_model(cfg, llm=llm, lora=_lora_cfg(), gradient_checkpointing=True).cuda()
    model.train()
    base = {n: p.detach().clone() for n, p in model.llm.named_parameters() if 'base_layer' in n}
    assert base and all(p.dtype == torch.bfloat16 for p in base.values())
    trainable = [n for n, p in model.llm.named_parameters() if p.requires_grad]
    assert trainable and all('lora_' in n or 'trainable_tokens' in n for n in trainable)
    # (transformers checkpoints a layer's ``forward``: its sub-modules run again in the backward)
    calls = _CountCalls(model.llm.get_decoder().layers[0].mlp)
    data = unit_batch(cfg, 6)
    losses = _train(model, data, steps=25)
    assert all(torch.isfinite(torch.tensor(losses))), losses
    assert sum(losses[-5:]) < 0.8 * sum(losses[:5]), losses
    # checkpointing recomputes each layer in the backward: layer 0's MLP runs twice per step
    assert calls.n == 2 * 25, calls.n
    for n, p in model.llm.named_parameters():
        if n in base:
            assert torch.equal(p, base[n]), f'frozen base weight {n} changed'
    lora_b = [p for n, p in model.llm.named_parameters() if 'lora_B' in n]
    assert lora_b and any(bool(p.abs().sum() > 0) for p in lora_b)  # B starts at 0 and trained


def test_qlora_4bit_trains_adapters(cfg, tmp_path):
    pytest.importorskip('bitsandbytes', reason='QLoRA needs bitsandbytes (optional.txt)')
    import bitsandbytes as bnb

    # A real from_pretrained path: save the tiny LLM (fp32) and load it 4-bit (NF4).
    src = build_model(cfg).llm
    src.save_pretrained(tmp_path / 'llm')
    llm = dict(name_or_path=str(tmp_path / 'llm'), quantization='4bit', torch_dtype='bfloat16')
    model = build_model(cfg, llm=llm, lora=_lora_cfg())
    model.cuda().train()
    four_bit = [m for m in model.llm.modules() if isinstance(m, bnb.nn.Linear4bit)]
    assert four_bit, 'no 4-bit linear layers: the base weights were not quantised'
    losses = _train(model, unit_batch(cfg, 6), steps=25)
    assert all(torch.isfinite(torch.tensor(losses))), losses
    assert sum(losses[-5:]) < 0.8 * sum(losses[:5]), losses
    lora_b = [p for n, p in model.llm.named_parameters() if 'lora_B' in n]
    assert lora_b and any(bool(p.abs().sum() > 0) for p in lora_b)
