# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""Settings tests used to fix at identity values, now tried with the defaults users get and with
non-trivial values.

``mean=0, std=1`` normalisation and loss weights of 1 make whole classes of mistakes invisible (a
mean not scaled to 0..255, channels swapped, a weight never applied).
"""

import pytest
import torch

from mmrefvlm.models.data_preprocessors import RefVLMDataPreprocessor
from mmrefvlm.models.data_preprocessors.refvlm_data_preprocessor import CLIP_MEAN, CLIP_STD

from ..test_datasets.conftest import scene  # noqa: F401  (fixture)
from .test_refvlm import TinyBox, batch, box_record, build, text_record


def _sample(images):
    return dict(
        input_ids=torch.tensor([1, 2, 3]),
        labels=torch.tensor([-100, 2, 3]),
        images=images,
        prompt_masks=torch.zeros(0, 4, 4, dtype=torch.bool),
    )


def _image(seed):
    return torch.randint(
        0, 256, (3, 4, 4), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed)
    )


def _normalised(img, mean, std):
    mean, std = torch.tensor(mean)[:, None, None], torch.tensor(std)[:, None, None]
    return (img.float() / 255 - mean) / std


def test_preprocessor_default_normalisation_is_clip_per_channel():
    img = _image(0)
    dp = RefVLMDataPreprocessor(pad_token_id=0, image_sizes=dict(vit=4))
    out = dp(dict(inputs=[_sample({'vit': img})], data_samples=[]), training=True)
    expected = _normalised(img, CLIP_MEAN, CLIP_STD)
    torch.testing.assert_close(out['inputs']['images']['vit'][0], expected)
    # The values are the published CLIP statistics (RGB order), not placeholders.
    assert CLIP_MEAN == pytest.approx((0.48145466, 0.4578275, 0.40821073))
    assert CLIP_STD == pytest.approx((0.26862954, 0.26130258, 0.27577711))


def test_preprocessor_per_encoder_statistics():
    mean = dict(vit=(0.1, 0.2, 0.3), pyramid=(0.6, 0.5, 0.4))
    std = dict(vit=(0.2, 0.25, 0.5), pyramid=(0.5, 0.4, 0.25))
    dp = RefVLMDataPreprocessor(
        pad_token_id=0, image_sizes=dict(vit=4, pyramid=4), mean=mean, std=std
    )
    images = {'vit': _image(1), 'pyramid': _image(2)}
    out = dp(dict(inputs=[_sample(images)], data_samples=[]), training=True)['inputs']['images']
    for name in ('vit', 'pyramid'):
        torch.testing.assert_close(out[name][0], _normalised(images[name], mean[name], std[name]))


def test_loss_weights_scale_each_term(scene):
    """RefVLM tests use an LLM weight of 1; here both weights are non-trivial and each loss term
    must be its unweighted value times its own weight."""

    def losses(weights):
        torch.manual_seed(1)  # the same decoder weights in both runs
        model = build(unit_decoders=dict(box=TinyBox(32)), loss_weights=weights)
        model.eval()  # dropout off: the two runs see the same computation
        data = batch(scene, model, [box_record(scene), text_record(scene)])
        with torch.no_grad():
            return model(**data, mode='loss')

    plain = losses(dict(llm=1.0, box=1.0))
    weighted = losses(dict(llm=0.3, box=2.5))
    assert plain['loss_llm'] > 0 and plain['loss_box_l1'] > 0
    torch.testing.assert_close(weighted['loss_llm'], 0.3 * plain['loss_llm'])
    torch.testing.assert_close(weighted['loss_box_l1'], 2.5 * plain['loss_box_l1'])
