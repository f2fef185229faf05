# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""``LisaMaskDecoder``: the SAM mask-decoder plugin with LISA's mask losses."""

from __future__ import annotations

from mmrefvlm.registry import MODELS
from projects.sam_plugin.sam_unit import SamMaskUnitDecoder, bce_dice_losses

#: LISA / GSVA ``sigmoid_ce_loss`` x 2 and ``dice_loss`` x 0.5 (their scale 1000 and eps 1e-6,
#: i.e. e = 1e-3 in pixel units): the ``loss_focal`` / ``loss_dice`` configs of the SAM decoder.
_LISA_LOSSES = bce_dice_losses(bce_weight=2.0, dice_weight=0.5, dice_eps=1e-3)
LISA_BCE_LOSS = _LISA_LOSSES['loss_focal']
LISA_DICE_LOSS = _LISA_LOSSES['loss_dice']


@MODELS.register_module()
class LisaMaskDecoder(SamMaskUnitDecoder):
    """LISA's mask head: ``[SEG]`` state -> MLP -> SAM sparse prompt -> SAM mask decoder.

    The architecture, freezing and image handling are those of :class:`SamMaskUnitDecoder`
    (``projects/sam_plugin``): the prompt MLP ``Linear(H, H) - ReLU - Linear(H, 256)``, SAM's
    frozen image encoder (unless ``freeze_image_encoder=False``), its trainable mask decoder,
    one mask per query (``multimask_output=False``). The losses are LISA's (Eq. 7 of GSVA):
    ``2.0 x BCE + 0.5 x DICE`` on every ``[SEG]`` mask against its ground truth, in query
    order (each expression is its own group, so the grouped matcher never permutes), logged as
    ``loss_mask_bce`` and ``loss_mask_dice``. The text CE (x 1.0) is the model's ``loss_llm``.

    Args:
        in_channels (int): LLM hidden size.
        loss_bce (dict): BCE config. Defaults to :data:`LISA_BCE_LOSS`.
        loss_dice (dict): Dice config (``activate=False``). Defaults to :data:`LISA_DICE_LOSS`.
        **kwargs: :class:`SamMaskUnitDecoder` arguments (``sam``, ``checkpoint``,
            ``num_queries``, ``freeze_image_encoder``...).
    """

    loss_keys = ('loss_mask_bce', 'loss_mask_dice')

    def __init__(
        self,
        in_channels: int,
        *,
        loss_bce: dict = LISA_BCE_LOSS,
        loss_dice: dict = LISA_DICE_LOSS,
        **kwargs,
    ) -> None:
        if 'loss_focal' in kwargs:
            raise ValueError('LisaMaskDecoder uses loss_bce, not loss_focal')
        # RefVLM offers every decoder that takes **kwargs the encoder widths; SAM has its own
        # image encoder and needs neither.
        kwargs.pop('clip_channels', None)
        kwargs.pop('pyramid_channels', None)
        super().__init__(in_channels, loss_focal=loss_bce, loss_dice=loss_dice, **kwargs)
