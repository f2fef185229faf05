# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""LisaMaskDecoder: the core decoder contract, and LISA's losses against a direct computation."""

import pytest
import torch
import torch.nn.functional as F

from mmrefvlm.registry import MODELS
from mmrefvlm.structures import UnitQueries
from mmrefvlm.testing import DEMO_IN_CHANNELS, UnitDecoderContract, demo_unit_inputs
from projects.lisa.lisa_seg import LisaMaskDecoder
from projects.sam_plugin.tests.sam_reference import TINY_SAM

TINY_CFG = dict(
    type='LisaMaskDecoder', in_channels=DEMO_IN_CHANNELS, num_queries=4, sam=TINY_SAM, match_size=16
)


def lisa_inputs(seed=0, **kwargs):
    queries, visual, samples = demo_unit_inputs('mask', seed=seed, **kwargs)
    gen = torch.Generator().manual_seed(seed + 100)
    for sample in samples:
        sample.sam_image = torch.randint(0, 256, (3, 64, 64), generator=gen, dtype=torch.uint8)
    return queries, visual, samples


class TestLisaDecoderContract(UnitDecoderContract):
    unit = 'mask'
    tiny_cfg = TINY_CFG

    def build_decoder(self, seed=0):
        # A random SAM's masks hardly depend on the prompt token (its LayerNorms squash it), and
        # LISA's BCE / DICE are far less sensitive than the core's focal x 20: amplify the prompt
        # and the single-mask hypernetwork so that the contract's cross-group target swap
        # changes the loss measurably (0.3 %).
        decoder = super().build_decoder(seed=seed)
        with torch.no_grad():
            decoder.text_proj[2].weight.mul_(30)
            decoder.sam.mask_decoder.output_hypernetworks_mlps[0].proj_out.weight.mul_(30)
        return decoder

    def make_inputs(self, **overrides):
        return lisa_inputs(**{**self.input_kwargs, **overrides})

    def expected_output_shapes(self, batch, slots):
        return dict(mask_logits=(batch, slots, 32, 32))

    def expected_loss_keys(self):
        return {'loss_mask_bce', 'loss_mask_dice'}


def _lisa_reference(logits, targets, valid):
    """LISA / GSVA ``sigmoid_ce_loss`` x 2 and ``dice_loss`` x 0.5 (scale 1000, eps 1e-6),
    computed over the valid pixels of each mask, averaged over masks."""
    bce, dice = [], []
    for lg, t, v in zip(logits, targets, valid, strict=True):
        lg, t = lg[v], t[v].float()
        bce.append(F.binary_cross_entropy_with_logits(lg, t, reduction='mean'))
        p = lg.sigmoid()
        num = 2 * (p / 1000 * t).sum()
        den = (p / 1000).sum() + (t / 1000).sum()
        dice.append(1 - (num + 1e-6) / (den + 1e-6))
    return 2.0 * torch.stack(bce).mean(), 0.5 * torch.stack(dice).mean()


def test_losses_are_lisas_on_square_images():
    torch.manual_seed(0)
    decoder = MODELS.build(TINY_CFG).eval()
    # square images: the whole frame is valid; one expression per group (no permutation)
    queries, visual, samples = lisa_inputs(
        num_queries=(2, 1), group_ids=[[0, 1], [0]], ori_shapes=[(32, 32), (32, 32)]
    )
    samples[0].gt_units.mask.masks[1] = False  # an empty target (LISA on gRefCOCO)
    with torch.no_grad():
        losses = decoder.loss(queries, visual, samples)
        embeds = decoder.encode_images(samples, queries.mask.any(1))
        logits = decoder(queries, visual, embeds)['mask_logits'][queries.mask.bool()]
    targets = torch.cat([s.gt_units.mask.masks for s in samples])
    bce, dice = _lisa_reference(logits, targets, torch.ones_like(targets))
    assert set(losses) == {'loss_mask_bce', 'loss_mask_dice'}
    assert losses['loss_mask_bce'] == pytest.approx(float(bce), rel=1e-4)
    assert losses['loss_mask_dice'] == pytest.approx(float(dice), rel=1e-4)


def test_loss_focal_is_refused_and_encoder_widths_are_ignored():
    with pytest.raises(ValueError, match='loss_bce'):
        LisaMaskDecoder(DEMO_IN_CHANNELS, sam=TINY_SAM, loss_focal={})
    dec = LisaMaskDecoder(DEMO_IN_CHANNELS, sam=TINY_SAM, clip_channels=8, pyramid_channels=(8,))
    assert isinstance(dec.sam.config.prompt_encoder_config.hidden_size, int)


def test_zero_queries_keep_lisa_keys():
    decoder = MODELS.build(TINY_CFG)
    queries, visual, samples = lisa_inputs()
    empty = UnitQueries(
        embeds=queries.embeds, mask=torch.zeros_like(queries.mask), group_ids=queries.group_ids
    )
    losses = decoder.loss(empty, visual, samples)
    assert set(losses) == {'loss_mask_bce', 'loss_mask_dice'}
    assert all(float(v) == 0.0 for v in losses.values())
