# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""SAM4MLLM data: prompt answers (PPG / PQPP), point sampling, SAM fine-tuning samples."""

import json

import numpy as np
import pytest
import torch

from mmrefvlm.datasets import FormatConversation, LoadRecordImage, PrepareImages
from mmrefvlm.datasets.geometry import decode_mask
from mmrefvlm.testing.tool_helpers import demo_data_root
from projects.sam4mllm.sam4mllm_seg import (
    PromptCodec,
    SAM4MLLMConversation,
    SamPromptAnswerFormat,
    SamPromptSample,
    sample_points,
)

TEMPLATES = 'projects.sam4mllm.sam4mllm_seg:templates'


@pytest.fixture(scope='module')
def records():
    root = demo_data_root()
    out = {}
    for task in ('res', 'gres'):
        with open(f'{root}/annotations/train_{task}.jsonl') as f:
            out[task] = [json.loads(line) for line in f][:60]
    return root, out


def _results(root, rec, idx=0):
    return dict(rec, data_root=root, sample_idx=idx)


def _format(predict=False):
    return FormatConversation(
        dict(source='demo'),
        chat_template='plain',
        num_image_tokens=4,
        cot=False,
        max_length=512,
        predict=predict,
        extra_template_dirs=[TEMPLATES],
        answer_format=SamPromptAnswerFormat(),
    )


def test_sample_points_labels():
    mask = np.zeros((20, 30), bool)
    mask[5:10, 8:20] = True
    rng = np.random.default_rng(0)
    pts = sample_points(mask, [6, 3, 22, 12], 5, 4, rng)
    assert [p[2] for p in pts] == [1] * 5 + [0] * 4
    for x, y, lab in pts:
        assert mask[int(y), int(x)] == bool(lab)
        assert 6 <= x <= 22 and 3 <= y <= 12  # negatives stay in the box
    full = np.ones((4, 4), bool)
    assert [p[2] for p in sample_points(full, [0, 0, 4, 4], 1, 1, rng)] == [1]  # no off pixel


def test_ppg_answer_encodes_box_and_points(records):
    root, recs = records
    codec = PromptCodec(100)
    fmt = _format()
    checked = 0
    load = LoadRecordImage()
    for rec in recs['res'][:20] + recs['gres'][:20]:
        out = SAM4MLLMConversation('ppg', num_bins=100, template='sam4mllm_ppg', system='S.')(
            _results(root, rec)
        )
        assert out['conversation'][0] == {'role': 'system', 'content': 'S.'}
        assert out['conversation'][1]['template'] == 'sam4mllm_ppg'
        group = out['conversation'][2]['answer'][0]['groups'][0]
        targets = group['targets']
        text = SamPromptAnswerFormat()(out['conversation'][2]['answer'])
        res = codec.parse(text)
        assert not res.warnings and res.no_object == (not targets)
        hw = (rec['image']['height'], rec['image']['width'])
        assert len(res.groups) == len(targets)
        for g, t in zip(res.groups, targets, strict=True):
            inst = rec['instances'][t]
            assert g.box == codec.box_bins(inst['bbox'], hw)
            assert [p[2] for p in g.points] == [1, 1, 0]
            mask = decode_mask(inst['mask'], *hw)
            for x, y, lab in g.points:  # the bin centre lies on the pixel it was written from
                px, py = codec.from_bin(x, hw[1]), codec.from_bin(y, hw[0])
                assert mask[int(py), int(px)] == bool(lab)
                checked += 1
        # the tokenized sample supervises exactly that text (+ EOS), and keeps its targets
        tok = fmt(load(dict(out)))
        sup = [t for t in tok['labels'].tolist() if t >= 0]
        assert fmt.tokenizer.decode(sup) == text + '</s>'
        assert [r.target for r in tok['ref_targets']] == targets
    assert checked > 30


def test_count_hint_reaches_the_prompt(records):
    root, recs = records
    fmt = _format()
    load = LoadRecordImage()
    texts = {}
    for count in ('1', '0+'):
        out = SAM4MLLMConversation('ppg', num_bins=100, template='sam4mllm_ppg', count=count)(
            _results(root, recs['gres'][0])
        )
        assert out['conversation'][0]['slots']['count'] == count
        assert out['conversation'][0]['slots']['expr']  # the record's expression is kept
        tok = fmt(load(dict(out)))
        texts[count] = fmt.tokenizer.decode(tok['input_ids'].tolist())
    assert '(1)' in texts['1'] and '(0+)' in texts['0+'] and '(1)' not in texts['0+']
    with pytest.raises(ValueError, match='count'):
        SAM4MLLMConversation('ppg', count='2')


def test_ppg_labels_file_is_used(records, tmp_path):
    root, recs = records
    rec = recs['res'][0]
    labels = {rec['id']: [[[10.5, 11.5, 1], [12.5, 11.5, 1], [1.5, 1.5, 0]]]}
    out = SAM4MLLMConversation('ppg', num_bins=100, labels=labels)(_results(root, rec))
    text = out['conversation'][1]['answer'][0]['groups'][0]['prompt_text']
    hw = (rec['image']['height'], rec['image']['width'])
    codec = PromptCodec(100)
    want = [
        (codec.to_bin(x, hw[1]), codec.to_bin(y, hw[0]), lab) for x, y, lab in labels[rec['id']][0]
    ]
    assert list(codec.parse(text).groups[0].points) == want


def test_pqpp_rounds(records):
    root, recs = records
    codec = PromptCodec(100)
    seen = {'Yes.': 0, 'No.': 0}
    for rec in recs['res'][:15] + recs['gres'][:15]:
        tr = SAM4MLLMConversation('pqpp', num_bins=100, num_point_turns=4)(_results(root, rec, 3))
        targets = tr['conversation'][1]['answer'][0]['groups'][0]['targets']
        first = codec.parse(tr['conversation'][1]['answer'][0]['groups'][0]['prompt_text'])
        assert all(not g.points for g in first.groups) and len(first.groups) == len(targets)
        extra = tr['conversation'][2:]
        assert len(extra) == (8 if targets else 0)
        boxes = [g.box for g in first.groups]
        for k, (q, a) in enumerate(zip(extra[::2], extra[1::2], strict=True)):
            res = codec.parse(q['content'])  # "(x,y)" then "[box]": the point is an orphan
            assert res.groups[0].box == boxes[k % len(boxes)]  # round-robin over the targets
            assert a['answer'] in ('Yes.', 'No.')
            seen[a['answer']] += 1
        pr = SAM4MLLMConversation('pqpp', num_bins=100, predict=True)(_results(root, rec))
        assert len(pr['conversation']) == 2  # round 1 only: the model asks round 2 itself
    assert seen['Yes.'] > 10 and seen['No.'] > 5


def test_pqpp_labels_match_the_mask_exactly(records):
    """A point's label is the mask at the sampled point (checked on the un-binned point)."""
    root, recs = records
    rec = recs['res'][1]
    conv = SAM4MLLMConversation('pqpp', num_bins=10**6, num_point_turns=12)
    out = conv(_results(root, rec, 9))
    hw = (rec['image']['height'], rec['image']['width'])
    target = out['conversation'][1]['answer'][0]['groups'][0]['targets'][0]
    mask = decode_mask(rec['instances'][target]['mask'], *hw)
    for q, a in zip(out['conversation'][2::2], out['conversation'][3::2], strict=True):
        x, y = (int(v) for v in q['content'].split('(')[1].split(')')[0].split(','))
        px, py = conv.codec.from_bin(x, hw[1]), conv.codec.from_bin(y, hw[0])
        assert mask[int(py), int(px)] == (a['answer'] == 'Yes.')


def test_sam_prompt_sample(records):
    root, recs = records
    t = SamPromptSample(size=32, max_pos=4, max_neg=3, box_jitter=0.1)
    for i, rec in enumerate(recs['res'][:10]):
        res = PrepareImages(sizes=dict(sam=48))(LoadRecordImage()(_results(root, rec, i)))
        sample = t(res)['data_samples']
        assert sample.sam_image.shape == (3, 48, 48) and sample.gt_mask.shape == (32, 32)
        scale = 48 / res['square_size']
        mask32 = sample.gt_mask
        for x, y, lab in sample.prompt_points.tolist():
            gx, gy = int(x / 48 * 32), int(y / 48 * 32)
            if lab == 1:  # positives lie on the object (up to the 48 -> 32 resampling)
                assert mask32[max(gy - 1, 0) : gy + 2, max(gx - 1, 0) : gx + 2].any()
        ys, xs = torch.nonzero(mask32, as_tuple=True)
        x1, y1, x2, y2 = (sample.prompt_box / 48 * 32).tolist()
        w, h = xs.max() - xs.min() + 1, ys.max() - ys.min() + 1
        assert abs(x1 - xs.min()) <= 0.1 * w + 1 and abs(y2 - ys.max() - 1) <= 0.1 * h + 1
        assert scale > 0
