# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""``AnyRefMaskDecoder``: ``<obj>`` state -> MLP gamma -> SAM mask decoder, with AnyRef's losses
(2.0 BCE + 0.5 DICE, one mask per ``<obj>`` in order)."""

from __future__ import annotations

from mmrefvlm.registry import MODELS
from projects.sam_plugin.sam_unit import SamMaskUnitDecoder, bce_dice_losses


@MODELS.register_module()
class AnyRefMaskDecoder(SamMaskUnitDecoder):
    """AnyRef's mask head (Eq. 1): ``M = S(gamma(h_obj), V_seg(x))``.

    Architecture, freezing and image handling are :class:`SamMaskUnitDecoder`'s: gamma is
    ``Linear(H, H) - ReLU - Linear(H, 256)``, its output the single sparse prompt of SAM's
    trainable mask decoder (``multimask_output=False``), SAM's image encoder frozen unless
    ``freeze_image_encoder=False``. Losses (Eq. 3, the text CE x 1.0 being the model's
    ``loss_llm``): ``bce_weight`` x BCE + ``dice_weight`` x DICE of every ``<obj>`` mask against
    its target, on the valid pixels of the square frame, the logits upsampled to the target
    size, the dice smoothed by 1 pixel as in AnyRef's code (:func:`bce_dice_losses`; the loss
    itself is :meth:`SamMaskUnitDecoder.loss`). AnyRef writes one ``<obj>`` per expression,
    each its own phrase group, so targets are taken in order; queries that share a group would
    be matched inside it (the framework's grouped Hungarian matching, as the other mask
    decoders). Empty targets are allowed (an
    expression that matches nothing is trained towards an all-zero mask).

    Args:
        in_channels (int): LLM hidden size.
        bce_weight (float): Defaults to 2.0.
        dice_weight (float): Defaults to 0.5.
        **kwargs: :class:`SamMaskUnitDecoder` arguments (``sam``, ``checkpoint``...).
    """

    loss_keys = ('loss_mask_bce', 'loss_mask_dice')

    def __init__(
        self, in_channels: int, *, bce_weight: float = 2.0, dice_weight: float = 0.5, **kwargs
    ) -> None:
        kwargs.pop('clip_channels', None)  # SAM has its own image encoder
        kwargs.pop('pyramid_channels', None)
        for key in ('loss_focal', 'loss_dice'):
            if key in kwargs:
                raise ValueError(f'AnyRefMaskDecoder sets {key} from bce_weight / dice_weight')
        losses = bce_dice_losses(float(bce_weight), float(dice_weight), dice_eps=1.0)
        super().__init__(in_channels, **losses, **kwargs)
        self.bce_weight, self.dice_weight = float(bce_weight), float(dice_weight)

    def extra_repr(self) -> str:  # noqa: D102
        return f'bce_weight={self.bce_weight}, dice_weight={self.dice_weight}'
