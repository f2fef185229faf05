# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""SAM4MLLM model: CE only and no new token, SAM prompts from parsed text, PQPP's batched round
2 equal to plain full-sequence forwards, prompts tokenised as in training."""

import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope

from mmrefvlm.datasets import refvlm_collate
from mmrefvlm.models import refvlm as refvlm_module
from mmrefvlm.models.generation import split_llm
from mmrefvlm.registry import DATASETS, MODELS
from mmrefvlm.testing.tool_helpers import ScriptedLM, demo_data_root
from mmrefvlm.tokenization import build_tokenizer
from projects.sam4mllm.sam4mllm_seg import PromptableSam, PromptGroup

REPO = osp.dirname(osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))
CONFIG = osp.join(REPO, 'projects', 'sam4mllm', 'configs', 'sam4mllm_{}_tiny_demo.py')
REAL_GENERATE = refvlm_module.greedy_generate
REAL_DECODE = PromptableSam.decode


def _cfg(variant):
    cfg = Config.fromfile(CONFIG.format(variant))
    cfg.model.sam.checkpoint = None
    for loader in (cfg.train_dataloader, cfg.test_dataloader):
        for ds in loader.dataset.datasets:
            ds.data_root = demo_data_root()
            ds.pipeline[2]['labels'] = None
    return cfg


@pytest.fixture(scope='module')
def pqpp():
    init_default_scope('mmrefvlm')
    cfg = _cfg('pqpp')
    torch.manual_seed(0)
    model = MODELS.build(cfg.model).eval()
    test = DATASETS.build(cfg.test_dataloader.dataset)
    train = DATASETS.build(cfg.train_dataloader.dataset)
    return model, test, train


def _batch(model, dataset, inds, training=False):
    return model.data_preprocessor(refvlm_collate([dataset[i] for i in inds]), training)


def test_ce_only_no_new_token_no_head(pqpp):
    model, _, train = pqpp
    assert len(model.tokenizer) == len(build_tokenizer('demo')) and not model.tokenizer.ids.extra
    assert len(model.unit_decoders) == 0
    assert not any(p.requires_grad for p in model.sam.parameters())
    model.train()
    losses = model(**_batch(model, train, [0, 3001], True), mode='loss')
    model.eval()
    assert set(losses) == {'loss_llm'}
    losses['loss_llm'].backward()
    assert all(p.grad is None for p in model.sam.parameters())
    with pytest.raises(ValueError, match='decoder'):
        MODELS.build(dict(_cfg('ppg').model, unit_decoders=dict(mask=dict(type='X'))))


def test_round2_tokens_match_training(pqpp):
    """The question the model asks at inference is tokenised exactly as in the training data."""
    model, _, train = pqpp
    sample = train.datasets[1][0]  # a res record with 4 point questions
    ids = sample['inputs']['input_ids'].tolist()
    eos = model.tokenizer.ids.eos
    first = ids.index(eos)
    text = model.tokenizer.decode(ids[first + 1 :])
    point = tuple(int(v) for v in text.split('(')[1].split(')')[0].split(','))
    box = tuple(int(v) for v in text.split('[')[1].split(']')[0].split(','))
    want = model._suffix_ids(PromptGroup(box), point)
    assert ids[first + 1 : first + 1 + len(want)] == want
    assert model.tokenizer.decode([ids[first + 1 + len(want)]]) in ('Yes', 'No')


def test_batched_round2_equals_full_forwards(pqpp):
    model, test, _ = pqpp
    data = _batch(model, test, [0, 5])
    inputs = data['inputs']
    vis, tokens = model.encode_images(inputs, data['data_samples'])
    embeds, _ = model.embed_inputs(inputs, vis, tokens)
    answers = [[5, 6, 7], [9]]
    groups = [PromptGroup((10, 12, 60, 70)), PromptGroup((3, 3, 20, 90))]
    rows = [(0, groups[0], (15, 20)), (1, groups[1], (4, 80)), (0, groups[1], (19, 3))]
    probs = model.point_answer_probs(embeds, inputs['attention_mask'], answers, rows)
    decoder, head, embed = split_llm(model.llm)
    eos = model.tokenizer.ids.eos
    for r, (b, group, pt) in enumerate(rows):
        keep = inputs['attention_mask'][b].bool()
        tail = torch.tensor([*answers[b], eos, *model._suffix_ids(group, pt)])
        full = torch.cat([embeds[b][keep], embed(tail)])[None]
        with torch.no_grad():
            h = decoder(inputs_embeds=full).last_hidden_state[0, -1]
        torch.testing.assert_close(probs[r], head(h).float().softmax(-1), atol=2e-5, rtol=1e-4)
    # and the kept points follow the threshold rule on those probabilities
    model.point_threshold = 0.0
    model.yes_id, model.no_id = int(probs[0].argmax()), int(probs[1].argmax())
    kept = model.query_points(embeds, inputs['attention_mask'], answers, [[groups[0]], []])
    assert len(kept[0][0]) >= 1 and kept[1] == []
    grid = model.grid_points(groups[0])
    assert all((x, y) in grid and label == 1 for x, y, label, _ in kept[0][0])


def _scripted_predict(model, test, monkeypatch, text, inds=(0,)):
    ids = model.tokenizer.encode(text) + [model.tokenizer.ids.eos]
    monkeypatch.setattr(
        refvlm_module,
        'greedy_generate',
        lambda llm, *a, **k: REAL_GENERATE(ScriptedLM(llm, ids), *a, **k),
    )
    calls = []

    def spy(self, emb, boxes, points=None):
        calls.append((boxes.clone(), [p.clone() for p in points or []]))
        return REAL_DECODE(self, emb, boxes, points)

    monkeypatch.setattr(PromptableSam, 'decode', spy)
    return model(**_batch(model, test, list(inds)), mode='predict'), calls


def test_ppg_predict_sends_parsed_prompts_to_sam(monkeypatch):
    init_default_scope('mmrefvlm')
    cfg = _cfg('ppg')
    model = MODELS.build(cfg.model).eval()
    test = DATASETS.build(cfg.test_dataloader.dataset)
    text = '[10,20,60,80] (30,40,1) (35,45,1) (12,22,0) [70,5,90,30] (80,20,1)'
    (sample,), calls = _scripted_predict(model, test, monkeypatch, text)
    h, w = sample.metainfo['ori_shape']
    side, size = sample.metainfo['square_size'], model.sam.image_size
    groups = model.codec.parse(text).groups
    want_boxes = [model.codec.to_pixels(g, (h, w))[0] for g in groups]
    torch.testing.assert_close(sample.pred_instances.bboxes, torch.tensor(want_boxes))
    ((boxes, points),) = calls
    torch.testing.assert_close(boxes, torch.tensor(want_boxes) * size / side)
    assert [p[:, 2].tolist() for p in points] == [[1, 1, 0], [1]]
    x, y, _ = model.codec.to_pixels(groups[0], (h, w))[1][0]
    torch.testing.assert_close(points[0][0, :2], torch.tensor([x, y]) * size / side)
    assert sample.pred_instances.masks.shape == (2, h, w) and not sample.warnings
    assert set(sample.timing) == {'generate', 'point_query', 'sam'}
    (empty,), calls = _scripted_predict(model, test, monkeypatch, 'No object found.')
    assert len(empty.pred_instances) == 0 and not calls and not empty.warnings
    (bad,), _ = _scripted_predict(model, test, monkeypatch, 'the red (3,4 [1,2')
    assert len(bad.pred_instances) == 0 and any('no_prompt' in w for w in bad.warnings)


def test_pqpp_predict_asks_the_grid(pqpp, monkeypatch):
    model, test, _ = pqpp
    seen = {}
    real = type(model).point_answer_probs

    def spy(self, embeds, mask, answers, rows):
        probs = real(self, embeds, mask, answers, rows)
        seen['rows'] = rows
        # make every answer a confident "Yes" except the first row's, a confident "No"
        out = torch.zeros_like(probs)
        out[:, self.yes_id] = 0.95
        out[0, self.yes_id], out[0, self.no_id] = 0.0, 0.99
        return out

    monkeypatch.setattr(type(model), 'point_answer_probs', spy)
    (sample,), calls = _scripted_predict(model, test, monkeypatch, '[10,20,60,80]')
    assert len(seen['rows']) == 25
    assert [r[2] for r in seen['rows']] == model.grid_points(PromptGroup((10, 20, 60, 80)))
    ((boxes, points),) = calls
    assert points[0].shape == (25, 3) and points[0][:, 2].tolist() == [0] + [1] * 24
    assert sample.pred_instances.masks.shape[0] == 1


def test_promptable_sam_groups_prompts_and_loads_hf_weights(tmp_path):
    tiny = _cfg('ppg').model.sam.sam
    torch.manual_seed(0)
    sam = PromptableSam(tiny).eval()
    emb = sam.encode(torch.randint(0, 255, (2, 3, 64, 64), dtype=torch.uint8))
    boxes = torch.tensor([[5.0, 6, 40, 50], [10, 10, 30, 30], [0, 0, 64, 64]])
    points = [torch.tensor([[20.0, 20, 1]]), torch.zeros(0, 3), torch.tensor([[9.0, 9, 0]])]
    emb3 = emb[[0, 1, 1]]
    together = sam.decode(emb3, boxes, points)
    for i in range(3):
        alone = sam.decode(emb3[i : i + 1], boxes[i : i + 1], [points[i]])
        torch.testing.assert_close(together[i : i + 1], alone, atol=1e-5, rtol=1e-4)
    path = str(tmp_path / 'sam.pth')
    torch.save({'state_dict': {f'sam.sam.{k}': v for k, v in sam.sam.state_dict().items()}}, path)
    again = PromptableSam(
        tiny, checkpoint=path, checkpoint_format='hf', checkpoint_prefix='sam.sam.'
    )
    torch.testing.assert_close(again.eval().decode(emb3, boxes, points), together)
