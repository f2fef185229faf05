# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""Box unit: a DETR-style decoder over the fused pyramid, one box per ``<REF>`` (no class head)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from mmengine.model import BaseModule
from mmengine.structures import InstanceData
from torch import Tensor, nn

from mmrefvlm.models.losses import GIoULoss
from mmrefvlm.models.matchers import (
    MatchRequest,
    box_cxcywh_to_xyxy,
    box_group_costs,
    match_slots,
    query_layout,
    select_items,
)
from mmrefvlm.registry import MODELS
from mmrefvlm.structures import SampleList, UnitQueries, VisualContext

from .base import BaseVisualUnitDecoder, two_phase_loss
from .detr import (
    DETR_DECODER,
    DetrAssembly,
    compose_detr_blocks,
    register_legacy_keys,
    zero_padded,
)
from .layers import MLP, FusedMemory
from .utils import gather_unit_targets, per_sample, real_slots, sample_frame, xyxy_to_cxcywh

# ConvNeXt-L (192/384/768/1536) + CLIP-L (1024) features, as in REF-VLM.
PAPER_PYRAMID_CHANNELS = (192, 384, 768, 1536)
PAPER_CLIP_CHANNELS = 1024
BOX_L1_LOSS = dict(type='mmdet.L1Loss', loss_weight=5.0)
# ``GIoULoss`` is mmdet's loss without its host->device copy per call (same values).
BOX_GIOU_LOSS = dict(type=GIoULoss, loss_weight=2.0)
BOX_MATCH_COSTS = dict(l1_weight=5.0, giou_weight=2.0)

# REF-VLM stage-2 box decoder (Vicuna-7B hidden size 4096): stages 0-2 + CLIP at 128 x 128.
PAPER_BOX_DECODER = dict(
    type='BoxUnitDecoder',
    in_channels=4096,
    num_queries=100,
    d_model=256,
    pyramid_channels=PAPER_PYRAMID_CHANNELS,
    clip_channels=PAPER_CLIP_CHANNELS,
    memory=dict(levels=(0, 1, 2), use_clip=True, size=128),
    decoder=dict(num_layers=6, num_heads=8, ffn_dim=2048, dropout=0.1),
    head=dict(type='BoxUnitHead', box_head='mlp'),
)
#: The box decoder's memory: ConvNeXt stages 0-2 + the CLIP grid, resized to 128 x 128.
BOX_MEMORY = dict(levels=(0, 1, 2), use_clip=True, size=128, mask_padding=True)


class PointerBoxHead(BaseModule):
    """Box head that points at memory cells instead of regressing coordinates from content.

    Every memory cell regresses the distances from its centre to the four edges of the object it
    lies on (FCOS-style ``l, t, r, b``, sigmoid, in frame units), giving one candidate box per cell;
    the decoded query attends over the cells (``softmax(W_q h . W_k m / sqrt(D))``, padding cells
    excluded) and its box is the attention-weighted mean of the candidates. Unlike an MLP on the
    query content, the location comes from *which* cells the query selects, so it is learnt as fast
    as a mask (the content of translation-equivariant features carries no absolute position);
    plain DETR needs very long schedules for the same.

    Args:
        d_model (int): Query / memory width.
    """

    def __init__(self, d_model: int) -> None:
        super().__init__()
        self.query = nn.Linear(d_model, d_model)
        self.key = nn.Linear(d_model, d_model)
        self.ltrb = MLP(d_model, d_model, 4, 2)
        self.scale = d_model**-0.5

    def forward(self, hidden: Tensor, memory: FusedMemory) -> Tensor:
        """(B, Q, D) decoded queries + memory -> (B, Q, 4) float cxcywh in [0, 1]."""
        mem = memory.memory
        logits = torch.einsum('bqd,bnd->bqn', self.query(hidden), self.key(mem)) * self.scale
        if memory.padding_mask is not None:
            logits = logits.masked_fill(memory.padding_mask[:, None], float('-inf'))
        weights = logits.float().softmax(-1)
        h, w = memory.hw
        ys = (torch.arange(h, device=mem.device, dtype=torch.float32) + 0.5) / h
        xs = (torch.arange(w, device=mem.device, dtype=torch.float32) + 0.5) / w
        cy, cx = torch.meshgrid(ys, xs, indexing='ij')
        centres = torch.stack([cx.flatten(), cy.flatten()], -1)  # (HW, 2)
        dist = self.ltrb(mem).float().sigmoid()  # (B, HW, 4)
        cells = torch.cat([centres - dist[..., :2], centres + dist[..., 2:]], -1).clamp(0, 1)
        xyxy = torch.einsum('bqn,bnc->bqc', weights, cells)
        return xyxy_to_cxcywh(xyxy).clamp(1e-4, 1 - 1e-4).to(hidden.dtype)


BOX_HEADS = ('mlp', 'pointer')


def box_regressor(d_model: int, box_head: str) -> nn.Module:
    """``'mlp'``: REF-VLM's 3-layer MLP on the decoded query; ``'pointer'``:
    :class:`PointerBoxHead`."""
    if box_head not in BOX_HEADS:
        raise ValueError(f"box_head must be 'mlp' or 'pointer', got {box_head!r}")
    return MLP(d_model, d_model, 4, 3) if box_head == 'mlp' else PointerBoxHead(d_model)


def regress_boxes(
    regressor: nn.Module, hidden: Tensor, memory: FusedMemory, queries: UnitQueries
) -> Tensor:
    """(B, Q, D) decoded queries -> (B, Q, 4) sigmoid cxcywh, zeros on padded slots."""
    if isinstance(regressor, PointerBoxHead):
        boxes = regressor(hidden, memory)
    else:
        boxes = regressor(hidden).sigmoid()
    # padded slots: zero (their decoder output is zeroed; keep them out of every op downstream)
    return zero_padded(boxes, queries)


@MODELS.register_module()
class BoxUnitHead(BaseModule):
    """Head of the box unit: one box per decoded query.

    Args:
        d_model (int): Query width.
        box_head (str): ``'mlp'`` (REF-VLM: a 3-layer MLP on the decoded query) or ``'pointer'``
            (:class:`PointerBoxHead`: the query points at memory cells that each regress their
            object's box; converges much faster on small data). Defaults to ``'mlp'``.
    """

    def __init__(self, d_model: int, box_head: str = 'mlp') -> None:
        super().__init__()
        self.box = box_regressor(d_model, box_head)

    def forward(
        self, hidden: Tensor, memory: FusedMemory, queries: UnitQueries, visual: VisualContext
    ) -> dict[str, Tensor]:
        """``dict(boxes=(B, Q, 4))`` float, sigmoid cxcywh in the square frame."""
        return dict(boxes=regress_boxes(self.box, hidden, memory, queries))


BOX_HEAD = dict(type=BoxUnitHead, box_head='mlp')


def matched_box_losses(
    loss_l1: torch.nn.Module, loss_giou: torch.nn.Module, pred: Tensor, tgt_xyxy: Tensor, num: int
) -> tuple[Tensor, Tensor]:
    """L1 on cxcywh and GIoU on xyxy of matched pairs, each summed and divided by ``num``.

    Args:
        loss_l1 (nn.Module): mmdet ``L1Loss`` (its ``loss_weight`` applies).
        loss_giou (nn.Module): ``GIoULoss`` (ours or mmdet's).
        pred (Tensor): (M, 4) float, predicted normalised cxcywh, in matched order.
        tgt_xyxy (Tensor): (M, 4) float, target normalised xyxy, in matched order.
        num (int): Normaliser (number of real queries).

    Returns:
        tuple[Tensor, Tensor]: Scalar L1 and GIoU losses.
    """
    l1 = loss_l1(pred, xyxy_to_cxcywh(tgt_xyxy), avg_factor=num)
    giou = loss_giou(box_cxcywh_to_xyxy(pred), tgt_xyxy, avg_factor=num)
    return l1, giou


def rescale_boxes(boxes: Tensor, sample, rescale: bool) -> Tensor:
    """Normalised square-frame xyxy -> original pixels (x S, clipped to the image) or [0, 1]."""
    if not rescale:
        return boxes.clamp(0, 1)
    height, width, side = sample_frame(sample)
    boxes = boxes * side
    limit = boxes.new_tensor([width, height, width, height])
    return torch.minimum(boxes.clamp(min=0), limit)


@MODELS.register_module()
class BoxUnitDecoder(BaseVisualUnitDecoder):
    """DETR-style box decoder: each ``<REF>`` query predicts exactly one box.

    A :class:`~.detr.DetrAssembly` (held as ``predictor``): query content = ``Linear(in_channels
    -> D)`` of the ``<REF>`` state plus a learned slot embedding; memory = resize-concat of the
    ``memory`` levels (+ CLIP grid), ``Linear`` to D, 2-D sine code; a post-norm DETR decoder;
    the :class:`BoxUnitHead` (``MLP(D, D, 4, 3)`` -> sigmoid ``(cx, cy, w, h)`` in the square
    frame). Losses (grouped Hungarian matching with the same weights as costs): ``loss_box_l1``
    (5 x L1 on cxcywh) and ``loss_box_giou`` (2 x (1 - GIoU)), each summed over matched pairs and
    divided by the number of real queries.

    Args:
        in_channels (int): LLM hidden size.
        num_queries (int): Most box queries per sample. Defaults to 100.
        d_model (int): Width of every block. Defaults to 256.
        pyramid_channels (Sequence[int]): Pyramid level channels, finest first. Defaults to
            ConvNeXt-L ``(192, 384, 768, 1536)``.
        clip_channels (int): CLIP grid channels. Defaults to 1024.
        memory (dict | nn.Module): :class:`~.layers.PyramidFusion` arguments (``levels``,
            ``use_clip``, ``size``, ``mask_padding``), merged over :data:`BOX_MEMORY` (stages
            0-2 + CLIP at 128 x 128, padding cells hidden).
        decoder (dict | nn.Module): :class:`~.layers.QueryDecoder` arguments (``num_layers``,
            ``num_heads``, ``ffn_dim``, ``dropout``), merged over :data:`~.detr.DETR_DECODER`
            (6 layers, 8 heads, FFN 2048, dropout 0.1).
        head (dict | nn.Module): Defaults to ``BoxUnitHead(box_head='mlp')``.
        loss_l1 (dict): L1 loss config. Defaults to ``mmdet.L1Loss`` x 5.
        loss_giou (dict): GIoU loss config. Defaults to ``GIoULoss`` x 2 (mmdet's values).
        match_costs (dict): :func:`box_group_costs` weights. Defaults to L1 5, GIoU 2.
        init_cfg (dict | list[dict], optional): MMEngine init config.
        **legacy: The flat arguments of earlier releases (``num_layers``, ``memory_size``,
            ``box_head``, ... see :data:`~.detr.LEGACY_DETR_ARGS`), applied over the blocks.

    ``forward`` returns ``dict(boxes=(B, Q, 4) float sigmoid cxcywh)``. ``predict`` returns
    ``bboxes`` (N, 4) xyxy (original pixels clipped to the image, or normalised square frame with
    ``rescale=False``) and ``scores`` (N,) = 1 (there is no confidence head: every ``<REF>`` is one
    object by construction).
    """

    unit = 'box'
    #: Checkpoints before the shared assembly (issue 18) held the head as ``predictor.box_head``.
    legacy_keys = (('predictor.box_head.', 'predictor.head.box.'),)

    def __init__(
        self,
        in_channels: int,
        *,
        num_queries: int = 100,
        d_model: int = 256,
        pyramid_channels: Sequence[int] = PAPER_PYRAMID_CHANNELS,
        clip_channels: int = PAPER_CLIP_CHANNELS,
        memory: dict | nn.Module = BOX_MEMORY,
        decoder: dict | nn.Module = DETR_DECODER,
        head: dict | nn.Module = BOX_HEAD,
        loss_l1: dict = BOX_L1_LOSS,
        loss_giou: dict = BOX_GIOU_LOSS,
        match_costs: dict = BOX_MATCH_COSTS,
        init_cfg=None,
        **legacy,
    ) -> None:
        super().__init__(in_channels, num_queries=num_queries, init_cfg=init_cfg)
        blocks = compose_detr_blocks(
            type(self).__name__,
            dict(memory=BOX_MEMORY, decoder=DETR_DECODER, head=BOX_HEAD),
            dict(memory=memory, decoder=decoder, head=head),
            legacy,
            head_legacy=dict(box_head=('box_head',)),
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
        self.loss_l1 = MODELS.build(loss_l1)
        self.loss_giou = MODELS.build(loss_giou)
        self.match_costs = {**BOX_MATCH_COSTS, **match_costs}

    def forward(self, queries: UnitQueries, visual: VisualContext) -> dict[str, Tensor]:
        """``dict(boxes=(B, Q, 4))`` float, sigmoid cxcywh in the square frame, every slot."""
        return self.predictor(queries, visual).outputs

    def loss(
        self, queries: UnitQueries, visual: VisualContext, batch_data_samples: SampleList
    ) -> dict[str, Tensor]:
        """``loss_box_l1`` and ``loss_box_giou`` against ``gt_units.box.bboxes``."""
        return two_phase_loss(self, queries, visual, batch_data_samples)

    def loss_costs(
        self, queries: UnitQueries, visual: VisualContext, batch_data_samples: SampleList
    ) -> MatchRequest:
        """Phase 1: boxes of the real queries, their targets, group costs (see the base)."""
        boxes = self(queries, visual)['boxes']
        num = queries.num_queries
        if num == 0:
            zero = boxes.sum() * 0.0
            return MatchRequest(None, state=dict(losses=dict(loss_box_l1=zero, loss_box_giou=zero)))
        layout = query_layout(queries)
        pred = real_slots(boxes, queries).float()  # losses in float32 (bf16 models too)
        tgt = gather_unit_targets(batch_data_samples, self.unit, ['bboxes'], queries)['bboxes']
        tgt = tgt.float()
        match = layout.match
        assert match is not None
        costs = None
        if match.sizes:
            sel_pred, sel_tgt = select_items(match, pred, xyxy_to_cxcywh(tgt))
            costs = box_group_costs(sel_pred, sel_tgt, match_slots(match), **self.match_costs).costs
        return MatchRequest(match, costs, dict(pred=pred, tgt=tgt, num=num))

    def loss_assigned(self, request: MatchRequest, tgt_inds: Tensor | None) -> dict[str, Tensor]:
        """Phase 2: the L1 and GIoU losses of the matched pairs."""
        state = request.state
        if 'losses' in state:
            return state['losses']
        tgt = state['tgt'] if tgt_inds is None else state['tgt'][tgt_inds]
        l1, giou = matched_box_losses(
            self.loss_l1, self.loss_giou, state['pred'], tgt, state['num']
        )
        return dict(loss_box_l1=l1, loss_box_giou=giou)

    @torch.no_grad()
    def predict(
        self,
        queries: UnitQueries,
        visual: VisualContext,
        batch_data_samples: SampleList,
        rescale: bool = True,
    ) -> list[InstanceData]:
        """One ``InstanceData(bboxes, scores)`` per sample (see the class docstring)."""
        boxes = box_cxcywh_to_xyxy(self(queries, visual)['boxes'].float())
        results = []
        for sample, sel in zip(
            batch_data_samples, per_sample(boxes, queries.mask.bool()), strict=True
        ):
            results.append(
                InstanceData(
                    bboxes=rescale_boxes(sel, sample, rescale), scores=sel.new_ones(sel.shape[0])
                )
            )
        return results
