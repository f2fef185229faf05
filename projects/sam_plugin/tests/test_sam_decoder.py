# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""SamMaskUnitDecoder: the core decoder contract on a tiny random SAM, freezing, image handling."""

import torch

from mmrefvlm.registry import MODELS, TRANSFORMS
from mmrefvlm.structures import RefVLMDataSample
from mmrefvlm.testing import DEMO_IN_CHANNELS, UnitDecoderContract, demo_unit_inputs
from projects.sam_plugin.sam_unit import PackSamImage, SamMaskUnitDecoder

from .sam_reference import TINY_SAM

TINY_CFG = dict(
    type='SamMaskUnitDecoder',
    in_channels=DEMO_IN_CHANNELS,
    num_queries=4,
    sam=TINY_SAM,
    match_size=16,
)


def sam_inputs(seed=0, **kwargs):
    queries, visual, samples = demo_unit_inputs('mask', seed=seed, **kwargs)
    gen = torch.Generator().manual_seed(seed + 100)
    for sample in samples:
        sample.sam_image = torch.randint(0, 256, (3, 64, 64), generator=gen, dtype=torch.uint8)
    return queries, visual, samples


class TestSamDecoderContract(UnitDecoderContract):
    unit = 'mask'
    tiny_cfg = TINY_CFG

    def build_decoder(self, seed=0):
        # A random SAM's masks hardly depend on the prompt token, so swapping targets across
        # groups would barely change the loss; make the prompt MLP's output large.
        decoder = super().build_decoder(seed=seed)
        with torch.no_grad():
            decoder.text_proj[2].weight.mul_(30)
        return decoder

    def make_inputs(self, **overrides):
        return sam_inputs(**{**self.input_kwargs, **overrides})

    def expected_output_shapes(self, batch, slots):
        return dict(mask_logits=(batch, slots, 32, 32))

    def expected_loss_keys(self):
        return {'loss_mask_focal', 'loss_mask_dice'}

    def check_prediction(self, pred, sample, rescale):
        h, w = sample.metainfo['ori_shape']
        size = (h, w) if rescale else (32, 32)
        assert pred.masks.shape == (len(pred), *size) and pred.masks.dtype == torch.bool


def test_only_prompt_mlp_and_mask_decoder_train():
    decoder = MODELS.build(TINY_CFG)
    names = {n for n, p in decoder.named_parameters() if p.requires_grad}
    assert all(n.startswith(('text_proj.', 'sam.mask_decoder.')) for n in names)
    assert any(n.startswith('sam.mask_decoder.transformer.') for n in names)
    assert not any('iou_prediction_head' in n or 'output_hypernetworks_mlps.1.' in n for n in names)
    assert all(not p.requires_grad for p in decoder.sam.vision_encoder.parameters())
    decoder.train()
    assert not decoder.sam.vision_encoder.training and decoder.sam.mask_decoder.training
    opened = MODELS.build(dict(TINY_CFG, freeze_image_encoder=False))
    assert all(p.requires_grad for p in opened.sam.vision_encoder.parameters())


def test_image_embeddings_come_from_each_samples_sam_image():
    torch.manual_seed(0)
    decoder = MODELS.build(TINY_CFG).eval()
    queries, visual, samples = sam_inputs(num_queries=(1, 1), group_ids=[[0], [0]])
    emb = decoder.encode_images(samples, torch.tensor([True, False]))
    assert emb[0].abs().sum() > 0 and emb[1].abs().sum() == 0  # only selected rows encoded

    def logits():
        with torch.no_grad():
            embeds = decoder.encode_images(samples, queries.mask.any(1))
            return decoder(queries, visual, embeds)['mask_logits']

    before = logits()
    samples[1].sam_image = torch.full_like(samples[1].sam_image, 7)
    after = logits()
    assert torch.equal(before[0], after[0])
    assert not torch.allclose(before[1], after[1])


def test_missing_sam_image_is_an_error():
    decoder = MODELS.build(TINY_CFG)
    queries, visual, samples = sam_inputs()
    del samples[0].sam_image
    try:
        decoder.loss(queries, visual, samples)
    except ValueError as err:
        assert 'PackSamImage' in str(err)
    else:
        raise AssertionError('a mask query without sam_image must raise')


def test_pack_sam_image_moves_the_image_into_the_sample():
    img = torch.zeros(3, 8, 8, dtype=torch.uint8)
    results = dict(inputs=dict(images=dict(vit=img, sam=img + 1)), data_samples=RefVLMDataSample())
    out = PackSamImage()(results)
    assert set(out['inputs']['images']) == {'vit'}
    assert torch.equal(out['data_samples'].sam_image, img + 1)
    text_only = PackSamImage()(dict(inputs=dict(images={}), data_samples=RefVLMDataSample()))
    assert 'sam_image' not in text_only['data_samples']
    assert TRANSFORMS.get('PackSamImage') is PackSamImage


def test_registered():
    assert MODELS.get('SamMaskUnitDecoder') is SamMaskUnitDecoder
    assert SamMaskUnitDecoder.unit == 'mask'
