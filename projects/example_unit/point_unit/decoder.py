# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""``point`` unit: one (x, y) per ``<REF>``, decoded by pointing at memory cells."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from mmengine.model import BaseModule
from mmengine.structures import InstanceData
from torch import Tensor, nn

from mmrefvlm.models.matchers import flat_group_keys, match_in_groups, point_group_costs
from mmrefvlm.models.unit_decoders import BaseVisualUnitDecoder, DetrAssembly, register_legacy_keys
from mmrefvlm.models.unit_decoders.detr import compose_detr_blocks, zero_padded
from mmrefvlm.models.unit_decoders.layers import MLP, FusedMemory
from mmrefvlm.models.unit_decoders.utils import gather_unit_targets, per_sample, sample_frame
from mmrefvlm.registry import MODELS
from mmrefvlm.structures import SampleList, UnitQueries, VisualContext

#: Attention logit of padding cells: finite (outputs stay finite) but with zero softmax weight.
MASKED_LOGIT = -1e4


def cell_centres(hw: tuple[int, int], device: torch.device) -> Tensor:
    """(H*W, 2) float ``(x, y)`` centres of an H x W grid over the unit square, row-major."""
    h, w = hw
    ys = (torch.arange(h, device=device, dtype=torch.float32) + 0.5) / h
    xs = (torch.arange(w, device=device, dtype=torch.float32) + 0.5) / w
    cy, cx = torch.meshgrid(ys, xs, indexing='ij')
    return torch.stack([cx.flatten(), cy.flatten()], -1)


def nearest_cell(points: Tensor, hw: tuple[int, int], padding: Tensor | None = None) -> Tensor:
    """Index of the valid grid cell whose centre is nearest to each point.

    Args:
        points (Tensor): (M, 2) float, normalised ``(x, y)``.
        hw (tuple[int, int]): Grid (H, W) over the unit square.
        padding (Tensor, optional): (M, H*W) bool, cells to skip (square-frame padding).

    Returns:
        Tensor: (M,) long row-major cell index (the cell holding the point when it is valid).
    """
    dist = torch.cdist(points.float(), cell_centres(hw, points.device))  # (M, HW)
    if padding is not None:
        dist = dist.masked_fill(padding, float('inf'))
    return dist.argmin(-1)


@MODELS.register_module()
class PointerPointHead(BaseModule):
    """Head of the ``point`` unit: point = attention-weighted mean of per-cell point candidates.

    Each memory cell proposes ``centre + offset`` (offset = ``offset_range * tanh(MLP(cell))``),
    i.e. where the point of the object it lies on is; the decoded query attends over the cells
    (``softmax(W_q h . W_k m / sqrt(D))``, padding cells excluded). Where the point is comes from
    *which* cells the query selects (learnt fast, like a mask), the sub-cell precision from the
    offsets.

    Args:
        d_model (int): Query / memory width.
        offset_range (float): Largest offset, in units of the square frame. Defaults to 0.25.
    """

    def __init__(self, d_model: int, offset_range: float = 0.25) -> None:
        super().__init__()
        if not 0.0 < offset_range <= 1.0:
            raise ValueError(f'offset_range must be in (0, 1], got {offset_range}')
        self.query = nn.Linear(d_model, d_model)
        self.key = nn.Linear(d_model, d_model)
        self.offset = MLP(d_model, d_model, 2, 2)
        self.offset_range = offset_range
        self.scale = d_model**-0.5

    def forward(
        self,
        hidden: Tensor,
        memory: FusedMemory,
        queries: UnitQueries | None = None,
        visual: VisualContext | None = None,
    ) -> dict[str, Tensor]:
        """Decode points (the head contract of :class:`DetrAssembly`).

        Args:
            hidden (Tensor): (B, Q, D) float, decoded queries.
            memory (FusedMemory): (B, H*W, D) memory tokens with their padding mask.
            queries (UnitQueries, optional): The routed queries; their padded slots get the
                point (0, 0).
            visual (VisualContext, optional): Unused.

        Returns:
            dict[str, Tensor]: ``points`` (B, Q, 2) float32 ``(x, y)`` in [0, 1] and ``logits``
            (B, Q, H*W) float32 attention logits (:data:`MASKED_LOGIT` on padding cells).
        """
        mem = memory.memory
        logits = torch.einsum('bqd,bnd->bqn', self.query(hidden), self.key(mem)).float()
        logits = logits * self.scale
        if memory.padding_mask is not None:
            logits = logits.masked_fill(memory.padding_mask[:, None], MASKED_LOGIT)
        weights = logits.softmax(-1)
        offsets = self.offset(mem).float().tanh() * self.offset_range  # (B, HW, 2)
        cells = cell_centres(memory.hw, mem.device)[None] + offsets
        points = torch.einsum('bqn,bnc->bqc', weights, cells).clamp(0, 1)
        if queries is not None:
            points = zero_padded(points, queries)
        return dict(points=points, logits=logits)


POINT_MEMORY = dict(levels=(0, 1), use_clip=True, size=32, mask_padding=True)
POINT_DECODER = dict(num_layers=1, num_heads=8, ffn_dim=1024, dropout=0.0)
POINT_HEAD = dict(type=PointerPointHead, offset_range=0.25)


@MODELS.register_module()
class PointUnitDecoder(BaseVisualUnitDecoder):
    """The ``point`` unit: each ``<REF>`` query predicts exactly one point.

    The core DETR assembly (:class:`DetrAssembly`, held as ``predictor``) with a
    :class:`PointerPointHead`: query content = ``Linear(in_channels -> D)`` of the ``<REF>``
    state + a slot embedding; memory = resize-concat of the ``memory`` levels (+ CLIP grid),
    ``Linear`` to D, sine code, padding cells masked; ``decoder`` DETR layers (``num_layers=0``:
    none); the pointer head gives the point.

    Losses on pairs matched inside each phrase group (Hungarian on ``point_group_costs``, L1):
    ``loss_point_l1`` (``l1_weight`` x L1 of ``(x, y)``, summed over pairs / number of queries)
    and ``loss_point_ce`` (``ce_weight`` x cross-entropy of the pointer attention against the
    memory cell holding the target, mean over pairs), which makes the attention peak early.

    Args:
        in_channels (int): LLM hidden size.
        num_queries (int): Most point queries per sample. Defaults to 16.
        d_model (int): Width. Defaults to 256.
        pyramid_channels (Sequence[int]): Pyramid level channels, finest first.
        clip_channels (int): CLIP grid channels.
        memory (dict | nn.Module): ``PyramidFusion`` arguments, merged over
            :data:`POINT_MEMORY` (stages 0-1 + CLIP at 32 x 32).
        decoder (dict | nn.Module, optional): ``QueryDecoder`` arguments, merged over
            :data:`POINT_DECODER` (one layer, 8 heads, FFN 1024, no dropout).
        head (dict | nn.Module): Defaults to ``PointerPointHead(offset_range=0.25)``.
        l1_weight (float): Weight of ``loss_point_l1`` and of the matching cost. Defaults to 5.
        ce_weight (float): Weight of ``loss_point_ce``. Defaults to 1.
        init_cfg (dict | list[dict], optional): MMEngine init config.
        **legacy: The flat arguments of the first release (``num_layers``, ``memory_size``,
            ``offset_range``, ...).

    ``forward`` returns ``points`` (B, Q, 2) float32 ``(x, y)`` in [0, 1] of the square frame and
    ``logits`` (B, Q, H_m * W_m) float32. ``predict`` returns ``points`` (N, 2) float32 (original
    pixels clipped to the image, or the normalised frame with ``rescale=False``) and ``scores``
    (N,) float32 = the largest attention weight.
    """

    unit = 'point'
    #: The first release held the blocks at the top level.
    legacy_keys = tuple(
        (f'{n}.', f'predictor.{n}.') for n in ('query_proj', 'memory', 'decoder', 'head')
    )

    def __init__(
        self,
        in_channels: int,
        *,
        num_queries: int = 16,
        d_model: int = 256,
        pyramid_channels: Sequence[int] = (192, 384, 768, 1536),
        clip_channels: int = 1024,
        memory: dict | nn.Module = POINT_MEMORY,
        decoder: dict | nn.Module | None = POINT_DECODER,
        head: dict | nn.Module = POINT_HEAD,
        l1_weight: float = 5.0,
        ce_weight: float = 1.0,
        init_cfg=None,
        **legacy,
    ) -> None:
        super().__init__(in_channels, num_queries=num_queries, init_cfg=init_cfg)
        if l1_weight < 0 or ce_weight < 0:
            raise ValueError(f'l1_weight and ce_weight must be >= 0, got {l1_weight}, {ce_weight}')
        blocks = compose_detr_blocks(
            type(self).__name__,
            dict(memory=POINT_MEMORY, decoder=POINT_DECODER, head=POINT_HEAD),
            dict(memory=memory, decoder=decoder, head=head),
            legacy,
            head_legacy=dict(offset_range=('offset_range',)),
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
        self.l1_weight, self.ce_weight = float(l1_weight), float(ce_weight)

    def _decode(
        self, queries: UnitQueries, visual: VisualContext
    ) -> tuple[Tensor, Tensor, FusedMemory]:
        out = self.predictor(queries, visual)
        return out.outputs['points'], out.outputs['logits'], out.memory

    def forward(self, queries: UnitQueries, visual: VisualContext) -> dict[str, Tensor]:
        """``points`` (B, Q, 2) and ``logits`` (B, Q, H_m * W_m), float32, every slot."""
        return self.predictor(queries, visual).outputs

    def loss(
        self, queries: UnitQueries, visual: VisualContext, batch_data_samples: SampleList
    ) -> dict[str, Tensor]:
        """``loss_point_l1`` and ``loss_point_ce`` against ``gt_units.point.points``."""
        points, logits, memory = self._decode(queries, visual)
        mask = queries.mask.bool()
        num = int(mask.sum())
        if num == 0:
            zero = points.sum() * 0.0 + logits.sum() * 0.0
            return dict(loss_point_l1=zero, loss_point_ce=zero)
        pred, pred_logits = points[mask], logits[mask]  # (M, 2), (M, HW)
        tgt = gather_unit_targets(batch_data_samples, self.unit, ['points'], queries)['points']
        tgt = tgt.float()
        keys = flat_group_keys(queries.group_ids, mask)
        pred_inds, tgt_inds = match_in_groups(
            point_group_costs, pred[:, None], tgt[:, None], keys, weight=self.l1_weight
        )
        pred, pred_logits, tgt = pred[pred_inds], pred_logits[pred_inds], tgt[tgt_inds]
        l1 = (pred - tgt).abs().sum() / num * self.l1_weight
        padding = None
        if memory.padding_mask is not None:  # (B, HW) -> the matched queries' rows
            rows = mask.nonzero()[:, 0][pred_inds]
            padding = memory.padding_mask[rows]
        ce = F.cross_entropy(pred_logits, nearest_cell(tgt, memory.hw, padding)) * self.ce_weight
        return dict(loss_point_l1=l1, loss_point_ce=ce)

    @torch.no_grad()
    def predict(
        self,
        queries: UnitQueries,
        visual: VisualContext,
        batch_data_samples: SampleList,
        rescale: bool = True,
    ) -> list[InstanceData]:
        """One ``InstanceData(points, scores)`` per sample (see the class docstring)."""
        points, logits, _ = self._decode(queries, visual)
        mask = queries.mask.bool()
        scores = logits.softmax(-1).amax(-1)
        results = []
        for sample, pts, sc in zip(
            batch_data_samples, per_sample(points, mask), per_sample(scores, mask), strict=True
        ):
            if rescale:
                height, width, side = sample_frame(sample)
                pts = torch.minimum(pts * side, pts.new_tensor([width, height]))
            results.append(InstanceData(points=pts.float(), scores=sc.float()))
        return results
