# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""Depth unit: a ``<REF>``-conditioned dense regression head on the FPN pixel decoder."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import cast

import torch
import torch.nn.functional as F
from mmengine.structures import InstanceData
from torch import Tensor, nn

from mmrefvlm.models.matchers import (
    GroupedCosts,
    GroupSlots,
    MatchRequest,
    layout_of,
    match_slots,
    query_layout,
    scatter_to_slots,
    select_items,
)
from mmrefvlm.registry import MODELS
from mmrefvlm.structures import SampleList, UnitQueries, VisualContext

from .base import BaseVisualUnitDecoder, two_phase_loss
from .box import PAPER_CLIP_CHANNELS, PAPER_PYRAMID_CHANNELS
from .layers import FPNPixelDecoder, QueryProjection, conv_norm_act, valid_region_mask
from .utils import (
    gather_unit_targets,
    per_sample,
    real_rows,
    real_slots,
    resize_maps,
    square_to_original,
)

# Not in the REF-VLM code (its depth decoder is a non-functional stub): our design at paper scale.
PAPER_DEPTH_DECODER = dict(
    type='DepthUnitDecoder',
    in_channels=4096,
    num_queries=10,
    d_model=256,
    pyramid_channels=PAPER_PYRAMID_CHANNELS,
    clip_channels=PAPER_CLIP_CHANNELS,
    pixel_levels=(0, 1, 2),
    pixel_use_clip=True,
    fpn_dim=256,
    pixel_dim=256,
)


def silog(pred_log: Tensor, target_log: Tensor, valid: Tensor, lam: float = 0.85) -> Tensor:
    """Scale-invariant log loss (Eigen et al. 2014, Eq. 4) of each map.

    ``L = mean(d^2) - lam * mean(d)^2`` over the valid pixels, ``d = log pred - log gt``. With
    ``lam = 1`` it is the variance of ``d``, invariant to a global scale of the prediction.

    Args:
        pred_log (Tensor): (M, P) float, predicted log-depth.
        target_log (Tensor): (M, P) float, target log-depth (any value on invalid pixels).
        valid (Tensor): (M, P) bool, pixels that count.
        lam (float): Weight of the mean term. Defaults to 0.85.

    Returns:
        Tensor: (M,) float; 0 for a map without valid pixels.
    """
    v = valid.to(pred_log.dtype)
    d = torch.where(valid, pred_log - target_log, torch.zeros_like(pred_log))
    n = v.sum(-1).clamp(min=1)
    return (d.pow(2) * v).sum(-1) / n - lam * ((d * v).sum(-1) / n).pow(2)


def pairwise_silog(pred_log: Tensor, target_log: Tensor, valid: Tensor, lam: float) -> Tensor:
    """SILog of every prediction against every target (target ``j``'s valid pixels).

    Args:
        pred_log (Tensor): (..., N, P) float.
        target_log (Tensor): (..., K, P) float.
        valid (Tensor): (..., K, P) bool.
        lam (float): Weight of the mean term.

    Returns:
        Tensor: (..., N, K) float32.
    """
    p = pred_log.float()
    v = valid.float()
    g = torch.where(valid, target_log.float(), torch.zeros_like(v))
    n = v.sum(-1).clamp(min=1).unsqueeze(-2)  # (..., 1, K)
    vt, gt = v.transpose(-1, -2), g.transpose(-1, -2)
    sum_d2 = p.pow(2) @ vt - 2 * (p @ gt) + g.pow(2).sum(-1).unsqueeze(-2)
    sum_d = p @ vt - g.sum(-1).unsqueeze(-2)
    return sum_d2 / n - lam * (sum_d / n).pow(2)


@torch.no_grad()
def depth_group_costs(
    pred_log: Tensor,
    target_log: Tensor,
    group_index: Tensor | GroupSlots,
    *,
    valid: Tensor,
    lam: float = 0.85,
) -> GroupedCosts:
    """Grouped SILog costs (the layout contract of the matchers' ``box_group_costs``).

    Args:
        pred_log (Tensor): (M, P) float, predicted log-depth.
        target_log (Tensor): (M, P) float, target log-depth.
        group_index (Tensor | GroupSlots): (M,) long, group key of each item, or the items'
            layout when known in advance.
        valid (Tensor): (M, P) bool, valid pixels of each target.
        lam (float): SILog lambda. Defaults to 0.85.

    Returns:
        GroupedCosts: ``costs`` (G, N, N) float32 (entries outside a group's block are unused).
    """
    slots = layout_of(group_index, pred_log.device)
    costs = pairwise_silog(
        scatter_to_slots(pred_log, slots),
        scatter_to_slots(target_log, slots),
        scatter_to_slots(valid, slots),
        lam,
    )
    return GroupedCosts(costs, slots.sizes, slots.slot_inds)


def _pool_log_depth(log_depth: Tensor, valid: Tensor, size: int) -> tuple[Tensor, Tensor]:
    """Valid-aware area pooling of (M, T, T) log-depth to (M, size, size) (+ any-valid mask)."""
    if log_depth.shape[-1] == size:
        return log_depth, valid
    v = valid.float()[:, None]
    num = F.adaptive_avg_pool2d(torch.where(valid, log_depth, 0.0)[:, None], size)
    den = F.adaptive_avg_pool2d(v, size)
    return (num / den.clamp(min=1e-6))[:, 0], den[:, 0] > 0


@MODELS.register_module()
class DepthUnitDecoder(BaseVisualUnitDecoder):
    """Depth decoder: FiLM-conditioned FPN features -> per-query log-depth map.

    The FPN pixel decoder (shared design with the mask decoder) gives features F (B, C, H, W).
    Each query's content + slot embedding (``query_proj``) is mapped by ``film`` to a per-channel
    scale and shift, ``F_q = F * (1 + gamma_q) + beta_q``; ``head`` (3x3 conv GN ReLU, 1x1 conv)
    gives the log-depth (depth = exp, always positive; the last bias starts at
    ``log(init_depth)``).

    Loss ``loss_depth_silog`` (x ``loss_weight``): the scale-invariant log loss of Eigen et al.
    in its plain form ``mean(d^2) - lambda * mean(d)^2`` (no x10 / sqrt), ``d = log pred -
    log gt`` over the pixels that are valid in the target, inside the image (``valid_hw``) and with
    gt > 0; the log-depth is bilinearly upsampled to the target size; averaged over the real
    queries.
    Queries of one phrase group are matched on the pairwise SILog (at ``match_size``).

    Args:
        in_channels (int): LLM hidden size.
        num_queries (int): Most depth queries per sample. Defaults to 10.
        d_model (int): Query width. Defaults to 256.
        pyramid_channels (Sequence[int]): Pyramid level channels, finest first.
        clip_channels (int): CLIP grid channels.
        pixel_levels (Sequence[int]): Pyramid levels of the FPN. Defaults to (0, 1, 2).
        pixel_use_clip (bool): Start the FPN from the CLIP grid. Defaults to True.
        fpn_dim (int): FPN width. Defaults to 256.
        pixel_dim (int): Width C of the conditioned pixel features. Defaults to 256.
        silog_lambda (float): lambda of the SILog loss. Defaults to 0.85.
        loss_weight (float): Defaults to 1.
        match_size (int): Side at which matching costs are computed. Defaults to 64.
        init_depth (float): Initial depth (metres) of the output bias. Defaults to 1.
        depth_range (tuple[float, float]): Clamp of predicted depths. Defaults to (1e-3, 1e3).
        init_cfg (dict | list[dict], optional): MMEngine init config.

    ``forward`` returns ``dict(log_depth=(B, Q, H, W) float)`` over the square frame. ``predict``
    returns ``depth`` (N, H, W) float metres in original pixels (square-frame (N, H_m, W_m) with
    ``rescale=False``) and ``scores`` (N,) = 1 (no confidence head).
    """

    unit = 'depth'

    def __init__(
        self,
        in_channels: int,
        *,
        num_queries: int = 10,
        d_model: int = 256,
        pyramid_channels: Sequence[int] = PAPER_PYRAMID_CHANNELS,
        clip_channels: int = PAPER_CLIP_CHANNELS,
        pixel_levels: Sequence[int] = (0, 1, 2),
        pixel_use_clip: bool = True,
        fpn_dim: int = 256,
        pixel_dim: int = 256,
        silog_lambda: float = 0.85,
        loss_weight: float = 1.0,
        match_size: int = 64,
        init_depth: float = 1.0,
        depth_range: tuple[float, float] = (1e-3, 1e3),
        init_cfg=None,
    ) -> None:
        super().__init__(in_channels, num_queries=num_queries, init_cfg=init_cfg)
        if not 0.0 <= silog_lambda <= 1.0 or init_depth <= 0 or match_size <= 0:
            raise ValueError(
                f'need 0 <= silog_lambda <= 1, init_depth > 0, match_size > 0, got '
                f'{silog_lambda}, {init_depth}, {match_size}'
            )
        if not 0 < depth_range[0] < depth_range[1]:
            raise ValueError(
                f'depth_range must be (low, high) with 0 < low < high, got {depth_range}'
            )
        self.query_proj = QueryProjection(in_channels, d_model, num_queries)
        self.pixel_decoder = FPNPixelDecoder(
            pyramid_channels,
            clip_channels,
            levels=pixel_levels,
            use_clip=pixel_use_clip,
            feat_channels=fpn_dim,
            out_channels=pixel_dim,
        )
        self.film = nn.Linear(d_model, 2 * pixel_dim)
        self.head = nn.Sequential(
            conv_norm_act(pixel_dim, pixel_dim, 3, relu=True), nn.Conv2d(pixel_dim, 1, 1)
        )
        self.init_depth = init_depth
        self._init_output()
        self.silog_lambda, self.loss_weight = silog_lambda, loss_weight
        self.match_size, self.depth_range = match_size, tuple(depth_range)

    def _init_output(self) -> None:
        out = cast(nn.Conv2d, self.head[-1])
        assert out.bias is not None  # the output conv is built with a bias
        nn.init.constant_(out.bias, math.log(self.init_depth))

    def init_weights(self) -> None:
        """MMEngine init, then the output bias back at ``log(init_depth)``."""
        super().init_weights()
        self._init_output()

    def forward(self, queries: UnitQueries, visual: VisualContext) -> dict[str, Tensor]:
        """``dict(log_depth=(B, Q, H, W))`` float over the square frame, every slot."""
        pixels = self.pixel_decoder(visual)  # (B, C, H, W)
        content, query_pos = self.query_proj(queries)  # (B, Q, D)
        gamma, beta = self.film(content + query_pos).chunk(2, dim=-1)  # (B, Q, C)
        cond = pixels[:, None] * (1 + gamma[..., None, None]) + beta[..., None, None]
        b, q = cond.shape[:2]
        log_depth = self.head(cond.flatten(0, 1)).view(b, q, *pixels.shape[-2:])
        return dict(log_depth=log_depth)

    def loss(
        self, queries: UnitQueries, visual: VisualContext, batch_data_samples: SampleList
    ) -> dict[str, Tensor]:
        """``loss_depth_silog`` against ``gt_units.depth.depth`` / ``.valid``."""
        return two_phase_loss(self, queries, visual, batch_data_samples)

    def loss_costs(
        self, queries: UnitQueries, visual: VisualContext, batch_data_samples: SampleList
    ) -> MatchRequest:
        """Phase 1: log-depth of the real queries, targets, SILog group costs."""
        log_depth = self(queries, visual)['log_depth']
        num = queries.num_queries
        if num == 0:
            return MatchRequest(
                None, state=dict(losses=dict(loss_depth_silog=log_depth.sum() * 0.0))
            )
        layout = query_layout(queries)
        pred = real_slots(log_depth, queries).float()  # (M, h, w)
        gt = gather_unit_targets(batch_data_samples, self.unit, ['depth', 'valid'], queries)
        depth = gt['depth'].float()
        size = depth.shape[-1]
        valid_hw = real_rows(visual.valid_hw, queries)
        valid = gt['valid'].bool() & (depth > 0) & valid_region_mask(valid_hw, size, size)
        gt_log = torch.where(valid, depth.clamp(min=1e-6).log(), torch.zeros_like(depth))
        match = layout.match
        assert match is not None
        costs = None
        if match.sizes:
            msize = min(self.match_size, size)
            sel_pred, sel_log, sel_valid = select_items(match, pred, gt_log, valid)
            m_gt, m_valid = _pool_log_depth(sel_log, sel_valid, msize)
            costs = depth_group_costs(
                resize_maps(sel_pred, msize).flatten(1),
                m_gt.flatten(1),
                match_slots(match),
                valid=m_valid.flatten(1),
                lam=self.silog_lambda,
            ).costs
        return MatchRequest(match, costs, dict(pred=pred, gt_log=gt_log, valid=valid, num=num))

    def loss_assigned(self, request: MatchRequest, tgt_inds: Tensor | None) -> dict[str, Tensor]:
        """Phase 2: the SILog loss of the matched pairs, averaged over the real queries."""
        st = request.state
        if 'losses' in st:
            return st['losses']
        gt_log, valid = (
            st[k] if tgt_inds is None else st[k][tgt_inds] for k in ('gt_log', 'valid')
        )
        size = gt_log.shape[-1]
        per_map = silog(
            resize_maps(st['pred'], size).flatten(1),
            gt_log.flatten(1),
            valid.flatten(1),
            self.silog_lambda,
        )
        return dict(loss_depth_silog=per_map.sum() / st['num'] * self.loss_weight)

    @torch.no_grad()
    def predict(
        self,
        queries: UnitQueries,
        visual: VisualContext,
        batch_data_samples: SampleList,
        rescale: bool = True,
    ) -> list[InstanceData]:
        """One ``InstanceData(depth, scores)`` per sample (see the class docstring)."""
        log_depth = self(queries, visual)['log_depth'].float()
        low, high = math.log(self.depth_range[0]), math.log(self.depth_range[1])
        results = []
        for sample, sel in zip(
            batch_data_samples, per_sample(log_depth, queries.mask.bool()), strict=True
        ):
            maps = square_to_original(sel, sample) if rescale else sel
            results.append(
                InstanceData(depth=maps.clamp(low, high).exp(), scores=maps.new_ones(maps.shape[0]))
            )
        return results
