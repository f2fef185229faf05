# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""AnyRefMaskDecoder: the core decoder contract, and AnyRef's loss (2 BCE + 0.5 DICE) by hand."""

import pytest
import torch
import torch.nn.functional as F

from mmrefvlm.models.unit_decoders.layers import valid_region_mask
from mmrefvlm.registry import MODELS
from mmrefvlm.testing import DEMO_IN_CHANNELS, UnitDecoderContract, demo_unit_inputs
from projects.anyref.anyref_seg import AnyRefMaskDecoder
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


def test_losses_by_hand_on_padded_frames():
    """2 x BCE (mean over each mask's valid pixels) + 0.5 x dice smoothed by 1 pixel (AnyRef's
    code), both averaged over the masks, on images whose square frames are padded."""
    torch.manual_seed(0)
    decoder = MODELS.build(TINY_CFG).eval()
    queries, visual, samples = sam_inputs(
        num_queries=(2, 1), group_ids=[[0, 1], [0]], ori_shapes=[(24, 32), (32, 20)]
    )
    samples[0].gt_units.mask.masks[1] = False  # an expression that matches nothing
    mask = queries.mask.bool()
    with torch.no_grad():
        losses = decoder.loss(queries, visual, samples)
        embeds = decoder.encode_images(samples, mask.any(1))
        logits = decoder(queries, visual, embeds)['mask_logits'][mask]
    targets = torch.cat([s.gt_units.mask.masks for s in samples]).float()
    valid_hw = visual.valid_hw[:, None].expand(-1, mask.shape[1], -1)[mask]
    valid = valid_region_mask(valid_hw, 32, 32)
    assert not valid.all()  # the padding is excluded below
    bce, dice = [], []
    for lg, t, v in zip(logits, targets, valid, strict=True):
        lg, t = lg[v], t[v]
        bce.append(F.binary_cross_entropy_with_logits(lg, t))
        p = lg.sigmoid()
        dice.append(1 - (2 * (p * t).sum() + 1) / (p.sum() + t.sum() + 1))
    torch.testing.assert_close(losses['loss_mask_bce'], 2.0 * torch.stack(bce).mean())
    torch.testing.assert_close(losses['loss_mask_dice'], 0.5 * torch.stack(dice).mean())


def test_loss_configs_are_refused():
    with pytest.raises(ValueError, match='bce_weight'):
        AnyRefMaskDecoder(DEMO_IN_CHANNELS, sam=TINY_SAM, loss_dice={})


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
