# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""AnyRefMaskDecoder: the core decoder contract, and AnyRef's loss (2 BCE + 0.5 DICE) by hand."""

import torch
import torch.nn.functional as F

from mmrefvlm.registry import MODELS
from mmrefvlm.testing import DEMO_IN_CHANNELS, UnitDecoderContract, demo_unit_inputs
from projects.anyref.anyref_seg import AnyRefMaskDecoder, bce_dice
from projects.sam_plugin.tests.sam_reference import TINY_SAM

TINY_CFG = dict(
    type='AnyRefMaskDecoder',
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


class TestAnyRefDecoderContract(UnitDecoderContract):
    unit = 'mask'
    tiny_cfg = TINY_CFG

    def build_decoder(self, seed=0):
        # A random SAM's mask logits are small and barely depend on the prompt, and BCE (unlike
        # the SAM plugin's focal loss) then hardly changes when targets swap across groups:
        # enlarge the prompt MLP's output and every layer of the mask hypernetworks (x10).
        decoder = super().build_decoder(seed=seed)
        with torch.no_grad():
            decoder.text_proj[2].weight.mul_(30)
            for param in decoder.sam.mask_decoder.output_hypernetworks_mlps.parameters():
                param.mul_(10)
        return decoder

    def make_inputs(self, **overrides):
        return sam_inputs(**{**self.input_kwargs, **overrides})

    def expected_output_shapes(self, batch, slots):
        return dict(mask_logits=(batch, slots, 32, 32))

    def expected_loss_keys(self):
        return {'loss_mask_bce', 'loss_mask_dice'}

    def check_prediction(self, pred, sample, rescale):
        h, w = sample.metainfo['ori_shape']
        size = (h, w) if rescale else (32, 32)
        assert pred.masks.shape == (len(pred), *size) and pred.masks.dtype == torch.bool


def test_bce_dice_by_hand():
    pred = torch.tensor([[[2.0, -1.0], [0.0, 3.0]]])
    target = torch.tensor([[[1.0, 0.0], [1.0, 0.0]]])
    valid = torch.tensor([[[1.0, 1.0], [1.0, 0.0]]])  # the last pixel is padding
    bce, dice = bce_dice(pred, target, valid)
    p = torch.sigmoid(pred[0]).flatten()[:3]
    t = target[0].flatten()[:3]
    want_bce = F.binary_cross_entropy(p, t)
    want_dice = 1 - (2 * (p * t).sum() + 1) / (p.sum() + t.sum() + 1)
    torch.testing.assert_close(bce, want_bce)
    torch.testing.assert_close(dice, want_dice)


def test_loss_weights_and_empty_targets():
    torch.manual_seed(0)
    decoder = MODELS.build(TINY_CFG)
    queries, visual, samples = sam_inputs(num_queries=(1, 1), group_ids=[[0], [0]])
    samples[1].gt_units.mask.masks[:] = False  # an expression that matches nothing
    losses = decoder.loss(queries, visual, samples)
    plain = AnyRefMaskDecoder(DEMO_IN_CHANNELS, bce_weight=1.0, dice_weight=1.0, **{
        k: v for k, v in TINY_CFG.items() if k not in ('type', 'in_channels')})  # fmt: skip
    plain.load_state_dict(decoder.state_dict())
    base = plain.loss(queries, visual, samples)
    torch.testing.assert_close(losses['loss_mask_bce'], 2.0 * base['loss_mask_bce'])
    torch.testing.assert_close(losses['loss_mask_dice'], 0.5 * base['loss_mask_dice'])
    assert all(torch.isfinite(v) for v in losses.values())
