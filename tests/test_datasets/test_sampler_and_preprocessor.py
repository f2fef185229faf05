# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
import itertools

import pytest
import torch
from mmengine.dataset import BaseDataset, ConcatDataset

from mmrefvlm.datasets import WeightedMultiDatasetSampler
from mmrefvlm.models.data_preprocessors import RefVLMDataPreprocessor


class Sized(BaseDataset):
    def __init__(self, n):
        self.n = n
        super().__init__(serialize_data=False)

    def load_data_list(self):
        return [dict(i=i) for i in range(self.n)]


def concat(*sizes):
    return ConcatDataset([Sized(n) for n in sizes], lazy_init=True)


def test_ratios_respected_and_full_coverage():
    ds = concat(10, 100, 7)
    sampler = WeightedMultiDatasetSampler(ds, ratios=[2, 1, 1], seed=3)
    draws = list(itertools.islice(iter(sampler), 8000))
    which = torch.bucketize(torch.tensor(draws), torch.tensor([10, 110]), right=True)
    frac = torch.bincount(which, minlength=3).float() / len(draws)
    assert torch.allclose(frac, torch.tensor([0.5, 0.25, 0.25]), atol=0.02)
    # a small dataset is seen completely before any sample repeats
    first = [d for d in draws if d < 10][:10]
    assert sorted(first) == list(range(10))
    # deterministic for a seed (resume replays the same stream); different for another seed
    again = list(itertools.islice(iter(WeightedMultiDatasetSampler(ds, [2, 1, 1], seed=3)), 8000))
    other = list(itertools.islice(iter(WeightedMultiDatasetSampler(ds, [2, 1, 1], seed=4)), 100))
    assert again == draws and other != draws[:100]


def test_zero_ratio_and_errors():
    ds = concat(5, 5)
    draws = list(itertools.islice(iter(WeightedMultiDatasetSampler(ds, [1, 0], seed=0)), 50))
    assert max(draws) < 5
    with pytest.raises(ValueError, match='non-negative'):
        WeightedMultiDatasetSampler(ds, ratios=[1, -1])
    with pytest.raises(ValueError, match='2 non-negative'):
        WeightedMultiDatasetSampler(ds, ratios=[1])
    with pytest.raises(TypeError, match='ConcatDataset'):
        WeightedMultiDatasetSampler(Sized(3))


def _inputs(n_ids, label_from, image=True, prompts=0):
    ids = torch.arange(10, 10 + n_ids)
    labels = torch.full_like(ids, -100)
    labels[label_from:] = ids[label_from:]
    return dict(
        input_ids=ids,
        labels=labels,
        images={'vit': torch.full((3, 4, 4), 255, dtype=torch.uint8)} if image else {},
        prompt_masks=torch.ones(prompts, 4, 4, dtype=torch.bool),
    )


def test_preprocessor_pads_right_in_training_left_in_predict():
    dp = RefVLMDataPreprocessor(
        pad_token_id=0, image_sizes=dict(vit=4), mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0)
    )
    batch = dict(inputs=[_inputs(5, 3, prompts=2), _inputs(3, 1, image=False)], data_samples=[])
    out = dp(batch, training=True)['inputs']
    assert out['input_ids'].tolist() == [[10, 11, 12, 13, 14], [10, 11, 12, 0, 0]]
    assert out['attention_mask'].tolist() == [[1] * 5, [1, 1, 1, 0, 0]]
    assert out['labels'].tolist() == [[-100, -100, -100, 13, 14], [-100, 11, 12, -100, -100]]
    assert out['has_image'].tolist() == [True, False]
    assert torch.allclose(out['images']['vit'][0], torch.ones(3, 4, 4))  # 255 / 255
    assert torch.equal(out['images']['vit'][1], torch.zeros(3, 4, 4))  # text-only: zeros
    assert out['prompt_masks'].shape == (2, 4, 4)
    assert out['prompt_batch_idx'].tolist() == [0, 0]
    left = dp(batch, training=False)['inputs']
    assert left['input_ids'].tolist() == [[10, 11, 12, 13, 14], [0, 0, 10, 11, 12]]
    assert left['attention_mask'].tolist() == [[1] * 5, [0, 0, 1, 1, 1]]


def test_preprocessor_missing_encoder_image():
    dp = RefVLMDataPreprocessor(pad_token_id=0, image_sizes=dict(vit=4, pyramid=8))
    with pytest.raises(KeyError, match='pyramid'):
        dp(dict(inputs=[_inputs(3, 1)], data_samples=[]), training=True)


def test_skip_gives_the_same_stream_tail():
    ds = concat(7, 13)
    full = list(itertools.islice(iter(WeightedMultiDatasetSampler(ds, [1, 2], seed=1)), 3000))
    s = WeightedMultiDatasetSampler(ds, [1, 2], seed=1)
    s.skip(2500)
    assert list(itertools.islice(iter(s), 500)) == full[2500:]
    assert list(itertools.islice(iter(s), 5)) == full[:5]  # skip applies to one pass only
