# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""``AnyRefMaskDecoder``: ``<obj>`` state -> MLP gamma -> SAM mask decoder, with AnyRef's losses
(2.0 BCE + 0.5 DICE, one mask per ``<obj>`` in order)."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from mmrefvlm.models.matchers import flat_group_keys, mask_group_costs, match_in_groups
from mmrefvlm.models.unit_decoders.layers import valid_region_mask
from mmrefvlm.models.unit_decoders.utils import gather_unit_targets, resize_maps
from mmrefvlm.registry import MODELS
from mmrefvlm.structures import SampleList, UnitQueries, VisualContext
from projects.sam_plugin.sam_unit import SamMaskUnitDecoder


def bce_dice(pred: Tensor, target: Tensor, valid: Tensor) -> tuple[Tensor, Tensor]:
    """Per-mask BCE (mean over valid pixels) and dice ``1 - (2 sum(p t) + 1) / (sum(p) + sum(t)
    + 1)`` on valid pixels (AnyRef / LISA code), each averaged over the masks.

    Args:
        pred (Tensor): (N, H, W) float logits.
        target (Tensor): (N, H, W) float in {0, 1}.
        valid (Tensor): (N, H, W) float in {0, 1}, the unpadded part of the square frame.
    """
    bce = F.binary_cross_entropy_with_logits(pred, target, reduction='none') * valid
    bce = bce.flatten(1).sum(1) / valid.flatten(1).sum(1).clamp(min=1)
    prob, t = (pred.sigmoid() * valid).flatten(1), (target * valid).flatten(1)
    dice = 1 - (2 * (prob * t).sum(1) + 1) / (prob.sum(1) + t.sum(1) + 1)
    return bce.mean(), dice.mean()


@MODELS.register_module()
class AnyRefMaskDecoder(SamMaskUnitDecoder):
    """AnyRef's mask head (Eq. 1): ``M = S(gamma(h_obj), V_seg(x))``.

    Architecture, freezing and image handling are :class:`SamMaskUnitDecoder`'s: gamma is
    ``Linear(H, H) - ReLU - Linear(H, 256)``, its output the single sparse prompt of SAM's
    trainable mask decoder (``multimask_output=False``), SAM's image encoder frozen unless
    ``freeze_image_encoder=False``. Losses (Eq. 3, the text CE x 1.0 being the model's
    ``loss_llm``): ``bce_weight`` x BCE + ``dice_weight`` x DICE of every ``<obj>`` mask against
    its target, on the valid pixels of the square frame, the logits upsampled to the target
    size. AnyRef writes one ``<obj>`` per expression, each its own phrase group, so targets are
    taken in order; queries that share a group would be matched inside it (the framework's
    grouped Hungarian matching, as the other mask decoders). Empty targets are allowed (an
    expression that matches nothing is trained towards an all-zero mask).

    Args:
        in_channels (int): LLM hidden size.
        bce_weight (float): Defaults to 2.0.
        dice_weight (float): Defaults to 0.5.
        **kwargs: :class:`SamMaskUnitDecoder` arguments (``sam``, ``checkpoint``...).
    """

    def __init__(
        self, in_channels: int, *, bce_weight: float = 2.0, dice_weight: float = 0.5, **kwargs
    ) -> None:
        kwargs.pop('clip_channels', None)  # SAM has its own image encoder
        kwargs.pop('pyramid_channels', None)
        super().__init__(in_channels, **kwargs)
        self.bce_weight, self.dice_weight = float(bce_weight), float(dice_weight)

    def loss(
        self, queries: UnitQueries, visual: VisualContext, batch_data_samples: SampleList
    ) -> dict[str, Tensor]:
        """``loss_mask_bce`` and ``loss_mask_dice`` (weighted) against ``gt_units.mask.masks``."""
        mask = queries.mask.bool()
        num = int(mask.sum())
        embeds = self.encode_images(batch_data_samples, mask.any(1)) if num else None
        logits = self(queries, visual, embeds)['mask_logits']
        if num == 0:
            zero = logits.sum() * 0.0
            return dict(loss_mask_bce=zero, loss_mask_dice=zero)
        target = gather_unit_targets(batch_data_samples, self.unit, ['masks'], queries)['masks']
        target = target.float() > 0.5
        size = target.shape[-1]
        pred = logits[mask].float()
        valid_hw = visual.valid_hw[:, None].expand(-1, mask.shape[1], -1)[mask]
        msize = min(self.match_size, size)
        pred_inds, tgt_inds = match_in_groups(
            mask_group_costs,
            resize_maps(pred, msize),
            F.adaptive_avg_pool2d(target.float()[:, None], msize)[:, 0] > 0.5,
            flat_group_keys(queries.group_ids, mask),
            valid=valid_region_mask(valid_hw, msize, msize),
            **self.match_costs,
        )
        valid = valid_region_mask(valid_hw[pred_inds], size, size).float()
        bce, dice = bce_dice(resize_maps(pred[pred_inds], size), target[tgt_inds].float(), valid)
        return dict(loss_mask_bce=bce * self.bce_weight, loss_mask_dice=dice * self.dice_weight)

    def extra_repr(self) -> str:  # noqa: D102
        return f'bce_weight={self.bce_weight}, dice_weight={self.dice_weight}'
