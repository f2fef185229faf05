# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""The paper-scale GPU benchmarks on their CPU path: ``--random-init --tiny`` models built on the
meta device and materialised, VT-Instruct-shaped synthetic batches, one training step per batch
size and a short generation, with every number of the results files finite. No timed asserts."""

import json
import math
import os.path as osp

import pytest
import torch

from benchmarks import paper_inference, paper_scale
from benchmarks.memory_model import predict_for_model, predict_memory, static_bytes
from benchmarks.paper_model import build_model, load_model_cfg
from benchmarks.synthetic_batches import BatchSpec, train_samples

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
LORA = osp.join(ROOT, 'configs', 'refvlm', 'stage2_lora.py')
SPEC = BatchSpec(seq_len=192, answer_tokens=144, refs_per_unit=2, prompt_every=2, mask_size=32)


@pytest.fixture(scope='module')
def tiny_lora():
    _, model_cfg, changes = load_model_cfg(LORA, tiny=True)
    model, startup = build_model(model_cfg, torch.device('cpu'), seed=0)
    return model, changes, startup


def test_random_init_materialises_everything(tiny_lora):
    model, changes, startup = tiny_lora
    assert any('Vicuna-7B' in c for c in changes) and any('--tiny' in c for c in changes)
    assert set(startup) == {'build', 'materialize', 'init'}
    assert {p.device.type for p in model.parameters()} == {'cpu'}
    assert {b.device.type for b in model.buffers()} == {'cpu'}
    assert all(torch.isfinite(p.float()).all() for p in model.parameters())
    # real buffers survive (not wiped as to_empty would): CLIP position ids, RoPE frequencies
    clip = model.vision_encoder.model
    pos = getattr(clip, 'vision_model', clip).embeddings.position_ids
    assert torch.equal(pos[0], torch.arange(pos.shape[1]))
    llm = model.llm.get_base_model()
    assert llm.model.rotary_emb.inv_freq[0] == 1.0
    # LoRA B starts at zero (peft's init), trainable parameters as configured
    b = [p for n, p in model.named_parameters() if 'lora_B' in n]
    assert b and all(p.abs().sum() == 0 for p in b)
    assert all(not p.requires_grad for p in model.vision_encoder.parameters())


def test_synthetic_batch_shapes_and_routing(tiny_lora):
    from mmrefvlm.datasets import refvlm_collate

    model, _, _ = tiny_lora
    data = model.data_preprocessor(refvlm_collate(train_samples(model, 3, SPEC)), True)
    inputs = data['inputs']
    assert inputs['input_ids'].shape == (3, SPEC.seq_len)  # equal lengths: no padding
    assert (inputs['labels'][:, 1:] != -100).sum() == 3 * SPEC.answer_tokens
    assert (inputs['input_ids'] == model.tokenizer.ids.image).sum(1).tolist() == [16] * 3
    assert inputs['prompt_batch_idx'].tolist() == [1]  # every 2nd sample has a prompt
    hidden = torch.zeros(3, SPEC.seq_len, 64)
    routing = model._route_labels(inputs, hidden)
    for unit, groups in (('box', [0, 1]), ('mask', [2, 3])):  # two groups of one <REF> each
        assert routing.queries[unit].mask.sum(1).tolist() == [2, 2, 2]
        assert routing.queries[unit].group_ids[0].tolist() == groups
    masks = data['data_samples'][0].gt_units.mask.masks
    assert masks.shape == (2, 32, 32) and masks.any()


def test_memory_query_of_a_built_model(tiny_lora):
    from benchmarks.memory_model import load_count_params, model_vision_bytes

    model, _, _ = tiny_lora
    got = predict_for_model(
        model, batch=2, seq=192, answer=144, checkpointing=True, decoder_per_sample=1000.0
    )
    static = static_bytes([load_count_params().count('total', model)], 'configured')
    expected = predict_memory(
        model.llm.get_base_model().config,
        static=static,
        batch=2,
        seq=192,
        answer=144,
        checkpointing=True,
        lora_r=64,
        decoder_per_sample=1000.0,
        vision_per_sample=model_vision_bytes(model),
    )
    assert got == expected
    assert got['activations']['decoders'] == 2000.0


def _finite(value) -> bool:
    if isinstance(value, dict):
        return all(_finite(v) for v in value.values())
    if isinstance(value, list):
        return all(_finite(v) for v in value)
    return not isinstance(value, float) or math.isfinite(value)


def test_train_step_two_batch_sizes(tmp_path):
    name = str(tmp_path / 'train_step_tiny')
    paper_scale.main(
        [
            '--config',
            LORA,
            '--random-init',
            '--tiny',
            '--batch-sizes',
            '1',
            '2',
            '--steps',
            '1',
            '--warmup',
            '0',
            '--seq-len',
            '192',
            '--answer-tokens',
            '144',
            '--refs',
            '2',
            '--name',
            name,
        ]
    )
    out = json.loads(open(name + '.json').read())
    assert out['lora_r'] == 64 and out['gradient_checkpointing'] is True
    assert [p['batch'] for p in out['points']] == [1, 2]
    for p in out['points']:
        assert p['status'] == 'ok' and p['steps'] == 1
        for key in ('samples_per_s', 'tokens_per_s', 'mfu', 'mfu_6n', 'hfu', 'achieved_tflops'):
            assert p[key] > 0, key
        assert p['labelled_tokens'] == p['batch'] * 144
        fl = p['flops']
        assert fl['hardware'] == fl['model'] + fl['recompute'] > fl['model'] > 0
        assert {'llm linear', 'llm lora', 'decoder: box', 'vision encoder'} <= set(fl['breakdown'])
        assert p['memory_model']['predicted_total'] > 0
        assert p['peak_bytes'] is None  # CUDA only
        assert _finite(p)
    # FLOPs scale with the batch (fixed sequence length)
    f1, f2 = (p['flops']['model'] for p in out['points'])
    assert f2 == pytest.approx(2 * f1)
    assert out['points'][0]['flop_counter_step']['measured'] > 0  # the cross-check ran
    assert 'flop_counter_step' not in out['points'][1]


def test_inference_two_batch_sizes(tmp_path):
    name = str(tmp_path / 'inference_tiny')
    paper_inference.main(
        [
            '--config',
            LORA,
            '--random-init',
            '--tiny',
            '--batch-sizes',
            '1',
            '2',
            '--max-new-tokens',
            '3',
            '--repeats',
            '1',
            '--name',
            name,
        ]
    )
    out = json.loads(open(name + '.json').read())
    assert set(out['results']) == {'1', '2'}
    for r in out['results'].values():
        assert r['status'] == 'ok' and r['tokens_per_s'] > 0 and r['prefill_s'] > 0
    assert out['results']['2']['prompt_len'] >= out['results']['1']['prompt_len']  # left padding
    assert out['throughput_ratio']['B=1/B=1'] == 1.0
    assert out['goal']['met'] is None  # no B=8 here
    assert _finite(out)


def test_out_of_memory_ends_the_sweep_cleanly(tmp_path, monkeypatch):
    measure = paper_scale.Bench.measure

    def fake_oom(self, spec, batch, deadline, count_flops):
        if batch == 2:
            raise torch.OutOfMemoryError('CUDA out of memory. Tried to allocate 2.00 GiB')
        return measure(self, spec, batch, deadline, count_flops)

    monkeypatch.setattr(paper_scale.Bench, 'measure', fake_oom)
    name = str(tmp_path / 'oom')
    argv = ['--config', LORA, '--random-init', '--tiny', '--batch-sizes', '1', '2', '4']
    argv += ['--steps', '1', '--warmup', '0', '--seq-len', '192', '--answer-tokens', '144']
    paper_scale.main(argv + ['--no-step-flop-count', '--name', name])
    out = json.loads(open(name + '.json').read())
    assert [p['status'] for p in out['points']] == ['ok', 'oom', 'skipped']
    assert 'out of memory' in out['points'][1]['error']
