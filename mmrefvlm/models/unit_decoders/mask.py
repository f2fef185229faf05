# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""Mask unit: MaskFormer-style pixel + query decoders, one mask per ``<REF>`` (no class head)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from mmengine.model import BaseModule
from mmengine.structures import InstanceData
from torch import Tensor, nn

from mmrefvlm.models.matchers import (
    MatchRequest,
    mask_group_costs,
    match_slots,
    query_layout,
    select_items,
)
from mmrefvlm.registry import MODELS
from mmrefvlm.structures import SampleList, UnitQueries, VisualContext

from .base import BaseVisualUnitDecoder, two_phase_loss
from .box import PAPER_CLIP_CHANNELS, PAPER_PYRAMID_CHANNELS
from .detr import DETR_DECODER, DetrAssembly, compose_detr_blocks, register_legacy_keys
from .layers import MLP, FPNPixelDecoder, FusedMemory, valid_region_mask
from .utils import (
    gather_unit_targets,
    per_sample,
    real_rows,
    real_slots,
    resize_maps,
    square_to_original,
)

MASK_FOCAL_LOSS = dict(
    type='mmdet.FocalLoss', use_sigmoid=True, alpha=0.25, gamma=2.0, loss_weight=20.0
)
MASK_DICE_LOSS = dict(
    type='mmdet.DiceLoss',
    use_sigmoid=True,
    activate=False,
    naive_dice=True,
    eps=1.0,
    loss_weight=1.0,
)
MASK_MATCH_COSTS = dict(focal_weight=20.0, dice_weight=1.0, alpha=0.25, gamma=2.0, dice_eps=1.0)

# REF-VLM stage-2 mask decoder: FPN over ConvNeXt stages 0-2 + CLIP (256 x 128 x 128 features),
# 30 queries, 6-layer query decoder over the CLIP grid (24 x 24).
PAPER_MASK_DECODER = dict(
    type='MaskUnitDecoder',
    in_channels=4096,
    num_queries=30,
    d_model=256,
    pyramid_channels=PAPER_PYRAMID_CHANNELS,
    clip_channels=PAPER_CLIP_CHANNELS,
    memory=dict(levels=(), use_clip=True, size=None),
    decoder=dict(num_layers=6, num_heads=8, ffn_dim=2048, dropout=0.1),
    head=dict(
        type='MaskUnitHead', pixel_levels=(0, 1, 2), pixel_use_clip=True, fpn_dim=256, mask_dim=256
    ),
)
#: The mask decoder's memory: the CLIP grid alone at its own size, padding cells hidden.
MASK_MEMORY = dict(levels=(), use_clip=True, size=None, mask_padding=True)


def _area_binarise(masks: Tensor, size: int) -> Tensor:
    """(M, T, T) binary masks -> (M, size, size) bool by area averaging and > 0.5."""
    if masks.shape[-1] == size:
        return masks.bool()
    return F.adaptive_avg_pool2d(masks.float()[:, None], size)[:, 0] > 0.5


@MODELS.register_module()
class MaskUnitHead(BaseModule):
    """Head of the mask unit (MaskFormer): ``mask logits = MLP(query) . pixel embedding``.

    An :class:`FPNPixelDecoder` turns the pyramid (+ CLIP grid) into pixel embeddings
    (B, C_m, H/4, W/4 of the pyramid input); a 3-layer MLP maps each decoded query to a C_m mask
    embedding.

    Args:
        d_model (int): Query width.
        pyramid_channels (Sequence[int]): Pyramid level channels, finest first.
        clip_channels (int): CLIP grid channels.
        pixel_levels (Sequence[int]): Pyramid levels of the FPN. Defaults to (0, 1, 2).
        pixel_use_clip (bool): Start the FPN from the CLIP grid. Defaults to True.
        fpn_dim (int): FPN width. Defaults to 256.
        mask_dim (int): Pixel / mask embedding width. Defaults to 256.
    """

    def __init__(
        self,
        d_model: int,
        pyramid_channels: Sequence[int],
        clip_channels: int,
        *,
        pixel_levels: Sequence[int] = (0, 1, 2),
        pixel_use_clip: bool = True,
        fpn_dim: int = 256,
        mask_dim: int = 256,
    ) -> None:
        super().__init__()
        self.pixel_decoder = FPNPixelDecoder(
            pyramid_channels,
            clip_channels,
            levels=pixel_levels,
            use_clip=pixel_use_clip,
            feat_channels=fpn_dim,
            out_channels=mask_dim,
        )
        self.mask_embed = MLP(d_model, d_model, mask_dim, 3)

    def forward(
        self, hidden: Tensor, memory: FusedMemory, queries: UnitQueries, visual: VisualContext
    ) -> dict[str, Tensor]:
        """``dict(mask_logits=(B, Q, H_m, W_m))`` float over the square frame, every slot."""
        pixels = self.pixel_decoder(visual)
        logits = torch.einsum('bqc,bchw->bqhw', self.mask_embed(hidden), pixels)
        return dict(mask_logits=logits)


MASK_HEAD = dict(
    type=MaskUnitHead, pixel_levels=(0, 1, 2), pixel_use_clip=True, fpn_dim=256, mask_dim=256
)
MASK_HEAD_ARGS = ('pixel_levels', 'pixel_use_clip', 'fpn_dim', 'mask_dim')


@MODELS.register_module()
class MaskUnitDecoder(BaseVisualUnitDecoder):
    """MaskFormer-style mask decoder: ``mask logits = MLP(query) . pixel embedding``.

    A :class:`~.detr.DetrAssembly` (held as ``predictor``): a DETR query decoder (padded queries
    masked out) cross-attends to ``memory`` (by default the CLIP grid, 1x1-projected, sine code,
    padding cells masked); the :class:`MaskUnitHead` dots each decoded query's mask embedding with
    the FPN pixel embeddings.

    Losses, on matched pairs, over the VALID pixels only (the image part of the square frame, from
    ``visual.valid_hw``), with targets binarised and logits bilinearly upsampled to the target size:
    ``loss_mask_focal`` (20 x sigmoid focal, alpha .25, gamma 2, mean over the valid pixels of each
    mask) and ``loss_mask_dice`` (1 x ``1 - (2 sum(p t) + 1) / (sum(p) + sum(t) + 1)`` on valid
    pixels), each summed over masks and divided by the number of real queries. Matching uses
    :func:`mask_group_costs` with the same weights at ``match_size`` (logits resized bilinearly,
    targets area-averaged and re-binarised).

    Args:
        in_channels (int): LLM hidden size.
        num_queries (int): Most mask queries per sample. Defaults to 30.
        d_model (int): Query decoder width. Defaults to 256.
        pyramid_channels (Sequence[int]): Pyramid level channels, finest first.
        clip_channels (int): CLIP grid channels.
        memory (dict | nn.Module): :class:`~.layers.PyramidFusion` arguments, merged over
            :data:`MASK_MEMORY` (the CLIP grid alone).
        decoder (dict | nn.Module): :class:`~.layers.QueryDecoder` arguments, merged over
            :data:`~.detr.DETR_DECODER`.
        head (dict | nn.Module): :class:`MaskUnitHead` arguments (``pixel_levels``,
            ``pixel_use_clip``, ``fpn_dim``, ``mask_dim``), merged over :data:`MASK_HEAD`
            (FPN over stages 0-2 from the CLIP grid, width 256); ``pyramid_channels`` and
            ``clip_channels`` are filled in.
        loss_focal (dict): Focal loss config (``mmdet.FocalLoss``, sigmoid, x 20).
        loss_dice (dict): Dice loss config (``mmdet.DiceLoss`` with ``activate=False``: it gets
            probabilities already restricted to valid pixels; naive dice, eps 1, x 1).
        match_costs (dict): :func:`mask_group_costs` options.
        match_size (int): Side at which matching costs are computed (at most the target size).
            Defaults to 64.
        mask_threshold (float): Probability threshold of predicted masks. Defaults to 0.5.
        init_cfg (dict | list[dict], optional): MMEngine init config.
        **legacy: The flat arguments of earlier releases (:data:`~.detr.LEGACY_DETR_ARGS` and
            the head's ``pixel_levels``, ``pixel_use_clip``, ``fpn_dim``, ``mask_dim``).

    ``forward`` returns ``dict(mask_logits=(B, Q, H_m, W_m) float)`` over the square frame.
    ``predict`` returns ``masks`` (N, H, W) bool in original pixels (logits resized to the square
    frame, the image part cropped; with ``rescale=False`` the (N, H_m, W_m) square-frame masks) and
    ``scores`` (N,) = mean probability inside the mask (0 for an empty mask).
    """

    unit = 'mask'
    #: Checkpoints before the shared assembly (issue 18) held every block at the top level.
    legacy_keys = (
        *((f'{n}.', f'predictor.{n}.') for n in ('query_proj', 'memory', 'decoder')),
        *((f'{n}.', f'predictor.head.{n}.') for n in ('pixel_decoder', 'mask_embed')),
    )

    def __init__(
        self,
        in_channels: int,
        *,
        num_queries: int = 30,
        d_model: int = 256,
        pyramid_channels: Sequence[int] = PAPER_PYRAMID_CHANNELS,
        clip_channels: int = PAPER_CLIP_CHANNELS,
        memory: dict | nn.Module = MASK_MEMORY,
        decoder: dict | nn.Module = DETR_DECODER,
        head: dict | nn.Module = MASK_HEAD,
        loss_focal: dict = MASK_FOCAL_LOSS,
        loss_dice: dict = MASK_DICE_LOSS,
        match_costs: dict = MASK_MATCH_COSTS,
        match_size: int = 64,
        mask_threshold: float = 0.5,
        init_cfg=None,
        **legacy,
    ) -> None:
        super().__init__(in_channels, num_queries=num_queries, init_cfg=init_cfg)
        if match_size <= 0 or not 0.0 < mask_threshold < 1.0:
            raise ValueError(
                f'need match_size > 0 and 0 < mask_threshold < 1, got {match_size}, '
                f'{mask_threshold}'
            )
        blocks = compose_detr_blocks(
            type(self).__name__,
            dict(memory=MASK_MEMORY, decoder=DETR_DECODER, head=MASK_HEAD),
            dict(memory=memory, decoder=decoder, head=head),
            legacy,
            head_legacy={name: (name,) for name in MASK_HEAD_ARGS},
        )
        if isinstance(blocks['head'], dict):
            blocks['head'] = dict(
                dict(pyramid_channels=tuple(pyramid_channels), clip_channels=clip_channels),
                **blocks['head'],
            )
        self.predictor = DetrAssembly(
            in_channels,
            num_queries,
            d_model=d_model,
            pyramid_channels=pyramid_channels,
            clip_channels=clip_channels,
            **blocks,
        )
        register_legacy_keys(self)
        self.loss_focal = MODELS.build(loss_focal)
        self.loss_dice = MODELS.build(loss_dice)
        if getattr(self.loss_dice, 'activate', False):
            raise ValueError(
                'loss_dice must be built with activate=False: it receives '
                'probabilities already restricted to the valid pixels'
            )
        self.match_costs = {**MASK_MATCH_COSTS, **match_costs}
        self.match_size = match_size
        self.mask_threshold = mask_threshold

    def forward(self, queries: UnitQueries, visual: VisualContext) -> dict[str, Tensor]:
        """``dict(mask_logits=(B, Q, H_m, W_m))`` float over the square frame, every slot."""
        return self.predictor(queries, visual).outputs

    def masked_losses(
        self, logits: Tensor, targets: Tensor, valid: Tensor, num: int
    ) -> tuple[Tensor, Tensor]:
        """Focal and dice losses of matched pairs on valid pixels.

        Args:
            logits (Tensor): (M, T, T) float, mask logits at the target size.
            targets (Tensor): (M, T, T) bool, binary targets.
            valid (Tensor): (M, T, T) bool, valid (image) pixels of each pair.
            num (int): Normaliser (number of real queries).

        Returns:
            tuple[Tensor, Tensor]: Scalar focal and dice losses.
        """
        pred, tgt, val = logits.flatten(1), targets.flatten(1).to(logits.dtype), valid.flatten(1)
        val = val.to(logits.dtype)
        per_pixel = val / val.sum(1, keepdim=True).clamp(min=1)  # mean over each mask's pixels
        focal = self.loss_focal(pred, tgt, weight=per_pixel, avg_factor=num)
        dice = self.loss_dice(pred.sigmoid() * val, tgt * val, avg_factor=num)
        return focal, dice

    def loss(
        self, queries: UnitQueries, visual: VisualContext, batch_data_samples: SampleList
    ) -> dict[str, Tensor]:
        """``loss_mask_focal`` and ``loss_mask_dice`` against ``gt_units.mask.masks``."""
        return two_phase_loss(self, queries, visual, batch_data_samples)

    def loss_costs(
        self, queries: UnitQueries, visual: VisualContext, batch_data_samples: SampleList
    ) -> MatchRequest:
        """Phase 1: logits of the real queries, binarised targets, group costs at
        ``match_size`` (see the base)."""
        logits = self(queries, visual)['mask_logits']
        num = queries.num_queries
        if num == 0:
            zero = logits.sum() * 0.0
            losses = dict(loss_mask_focal=zero, loss_mask_dice=zero)
            return MatchRequest(None, state=dict(losses=losses))
        layout = query_layout(queries)
        pred = real_slots(logits, queries).float()  # (M, h, w)
        tgt = gather_unit_targets(batch_data_samples, self.unit, ['masks'], queries)['masks']
        tgt = tgt.float() > 0.5  # binarise
        size = tgt.shape[-1]
        valid_hw = real_rows(visual.valid_hw, queries)  # (M, 2)
        match = layout.match
        assert match is not None
        costs = None
        if match.sizes:
            msize = min(self.match_size, size)
            sel_pred, sel_tgt, sel_hw = select_items(match, pred, tgt, valid_hw)
            costs = mask_group_costs(
                resize_maps(sel_pred, msize),
                _area_binarise(sel_tgt, msize),
                match_slots(match),
                valid=valid_region_mask(sel_hw, msize, msize),
                **self.match_costs,
            ).costs
        return MatchRequest(match, costs, dict(pred=pred, tgt=tgt, valid_hw=valid_hw, num=num))

    def loss_assigned(self, request: MatchRequest, tgt_inds: Tensor | None) -> dict[str, Tensor]:
        """Phase 2: focal and dice losses of the matched pairs on valid pixels."""
        state = request.state
        if 'losses' in state:
            return state['losses']
        tgt = state['tgt'] if tgt_inds is None else state['tgt'][tgt_inds]
        size = tgt.shape[-1]
        focal, dice = self.masked_losses(
            resize_maps(state['pred'], size),
            tgt,
            valid_region_mask(state['valid_hw'], size, size),
            state['num'],
        )
        return dict(loss_mask_focal=focal, loss_mask_dice=dice)

    @torch.no_grad()
    def predict(
        self,
        queries: UnitQueries,
        visual: VisualContext,
        batch_data_samples: SampleList,
        rescale: bool = True,
    ) -> list[InstanceData]:
        """One ``InstanceData(masks, scores)`` per sample (see the class docstring)."""
        logits = self(queries, visual)['mask_logits'].float()
        results = []
        for sample, sel in zip(
            batch_data_samples, per_sample(logits, queries.mask.bool()), strict=True
        ):
            prob = (square_to_original(sel, sample) if rescale else sel).sigmoid()
            masks = prob > self.mask_threshold
            area = masks.flatten(1).sum(1)
            scores = (prob * masks).flatten(1).sum(1) / area.clamp(min=1)
            results.append(InstanceData(masks=masks, scores=scores))
        return results
