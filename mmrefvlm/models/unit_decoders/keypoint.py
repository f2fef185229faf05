# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""Keypoint unit: per ``<REF>`` a box, K keypoints and visibilities; box-decoder initialisable."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from mmengine.logging import print_log
from mmengine.structures import InstanceData
from torch import Tensor, nn

from mmrefvlm.models.matchers import (
    MatchRequest,
    box_cxcywh_to_xyxy,
    box_group_costs,
    match_slots,
    point_group_costs,
    query_layout,
    select_items,
)
from mmrefvlm.registry import MODELS
from mmrefvlm.structures import SampleList, UnitQueries, VisualContext

from .base import BaseVisualUnitDecoder, two_phase_loss
from .box import (
    BOX_GIOU_LOSS,
    BOX_L1_LOSS,
    BOX_MEMORY,
    PAPER_CLIP_CHANNELS,
    PAPER_PYRAMID_CHANNELS,
    BoxUnitDecoder,
    matched_box_losses,
    rescale_boxes,
)
from .detr import (
    DETR_DECODER,
    DetrAssembly,
    compose_detr_blocks,
    register_legacy_keys,
    rename_legacy_keys,
)
from .keypoint_head import KEYPOINT_HEAD, KEYPOINT_STAGE, keypoint_head_cfg
from .utils import gather_unit_targets, per_sample, real_slots, sample_frame, xyxy_to_cxcywh

# COCO person keypoint sigmas (pycocotools ``COCOeval`` kpt_oks_sigmas).
COCO_KEYPOINT_SIGMAS = (
    0.026,
    0.025,
    0.025,
    0.035,
    0.035,
    0.079,
    0.079,
    0.072,
    0.072,
    0.062,
    0.062,
    0.107,
    0.107,
    0.087,
    0.087,
    0.089,
    0.089,
)
KEYPOINT_MATCH_COSTS = dict(l1_weight=5.0, giou_weight=2.0, point_weight=2.0)

# REF-VLM stage-3 keypoint decoder (box decoder + a second 6-layer DETR over keypoint queries).
PAPER_KEYPOINT_DECODER = dict(
    type='KeypointUnitDecoder',
    in_channels=4096,
    num_queries=100,
    num_keypoints=17,
    d_model=256,
    pyramid_channels=PAPER_PYRAMID_CHANNELS,
    clip_channels=PAPER_CLIP_CHANNELS,
    memory=dict(levels=(0, 1, 2), use_clip=True, size=128),
    decoder=dict(num_layers=6, num_heads=8, ffn_dim=2048, dropout=0.1),
    head=dict(type='KeypointUnitHead', box_head='mlp', point_decoder=dict(num_layers=6)),
)


def keypoint_oks(
    pred: Tensor, target: Tensor, labelled: Tensor, areas: Tensor, sigmas: Tensor
) -> Tensor:
    """Object keypoint similarity (COCO definition) of aligned prediction/target pairs.

    ``OKS = mean over labelled i of exp(-d_i^2 / (2 * area * (2 sigma_i)^2))`` with ``d_i`` the
    Euclidean distance, as pycocotools ``COCOeval.computeOks`` for a ground truth with labelled
    keypoints. OKS is invariant to a common scaling of coordinates and area, so normalised
    square-frame units work.

    Args:
        pred (Tensor): (M, K, 2) float, predicted xy.
        target (Tensor): (M, K, 2) float, target xy.
        labelled (Tensor): (M, K) bool, labelled target keypoints (COCO ``v > 0``).
        areas (Tensor): (M,) float, object areas in the same units squared.
        sigmas (Tensor): (K,) float, per-keypoint sigmas.

    Returns:
        Tensor: (M,) float in [0, 1]; 0 for a target without labelled keypoints.
    """
    dist2 = (pred - target).pow(2).sum(-1)  # (M, K)
    var = (2 * sigmas.to(pred.dtype)).pow(2)
    e = dist2 / (2 * var[None] * (areas[:, None].to(pred.dtype) + torch.finfo(pred.dtype).eps))
    lab = labelled.to(pred.dtype)
    return (torch.exp(-e) * lab).sum(-1) / lab.sum(-1).clamp(min=1)


def _sigmas(sigmas: Sequence[float] | float | None, num_keypoints: int) -> Tensor:
    if sigmas is None:
        if num_keypoints != len(COCO_KEYPOINT_SIGMAS):
            raise ValueError(
                f'sigmas must be given for num_keypoints={num_keypoints} (the COCO '
                'default only fits 17 keypoints)'
            )
        sigmas = COCO_KEYPOINT_SIGMAS
    if isinstance(sigmas, (int, float)):
        sigmas = [float(sigmas)] * num_keypoints
    if len(sigmas) != num_keypoints or min(sigmas) <= 0:
        raise ValueError(f'need {num_keypoints} positive sigmas, got {list(sigmas)}')
    return torch.tensor(sigmas, dtype=torch.float32)


@MODELS.register_module()
class KeypointUnitDecoder(BaseVisualUnitDecoder):
    """Box decoder + keypoint decoder: per ``<REF>`` a box, K keypoints and K visibilities.

    The :class:`~.detr.DetrAssembly` of :class:`BoxUnitDecoder` (held as ``predictor``, same
    module names, so :meth:`init_from_box_decoder` maps a trained box decoder 1:1) with a
    :class:`KeypointUnitHead`: a box per query, then a second DETR decoder over K keypoint queries
    per person.

    Losses (grouped matching on ``box_group_costs + point_group_costs``), each divided by the
    number of real queries M:
    ``loss_keypoint_bbox_l1`` (5 x L1 cxcywh), ``loss_keypoint_bbox_giou`` (2 x (1 - GIoU)),
    ``loss_keypoint_l1`` (2 x L1 over labelled keypoints' xy), ``loss_keypoint_oks``
    (2 x (1 - OKS), area = target box area, people without labelled keypoints contribute 0) and
    ``loss_keypoint_vis`` (1 x BCE of the visibility logit vs ``v > 0``, averaged over the K
    keypoints).

    Args:
        in_channels (int): LLM hidden size.
        num_queries (int): Most queries per sample. Defaults to 100.
        num_keypoints (int): K. Defaults to 17 (COCO).
        sigmas (Sequence[float] | float, optional): OKS sigmas (K values or one for all);
            None = COCO's (K must be 17).
        d_model, pyramid_channels, clip_channels, memory, decoder: The box stage, exactly as
            :class:`BoxUnitDecoder` (defaults: the paper's).
        head (dict | nn.Module): Defaults to ``KeypointUnitHead(box_head='mlp',
            point_decoder=dict(num_layers=6))``; the point decoder's other arguments default to
            those of ``decoder`` (same width, heads, FFN) and ``num_keypoints`` is filled in.
        loss_bbox_l1 (dict): Box L1 loss config (``mmdet.L1Loss`` x 5).
        loss_bbox_giou (dict): Box GIoU loss config (``GIoULoss`` x 2).
        keypoint_l1_weight (float): Defaults to 2.
        oks_weight (float): Defaults to 2.
        visibility_weight (float): Defaults to 1.
        match_costs (dict): ``l1_weight``, ``giou_weight`` (box) and ``point_weight``.
        init_cfg (dict | list[dict], optional): MMEngine init config.
        **legacy: The flat arguments of earlier releases (:data:`~.detr.LEGACY_DETR_ARGS`,
            ``box_head`` and ``num_point_layers``), applied over the blocks.

    ``forward`` returns ``boxes`` (B, Q, 4) sigmoid cxcywh, ``keypoints`` (B, Q, K, 2) normalised
    xy and ``visibility_logits`` (B, Q, K), all float in the square frame. ``predict`` returns
    ``keypoints`` (N, K, 3) (x, y in original pixels clipped to the image, visibility
    probability), ``bboxes`` (N, 4) xyxy and ``scores`` (N,) = mean visibility probability.
    """

    unit = 'keypoint'
    #: Checkpoints before the shared assembly (issue 18): the keypoint stage at the top level.
    legacy_keys = (
        ('predictor.box_head.', 'predictor.head.box.'),
        *((f'{name}.', f'predictor.head.{name}.') for name in KEYPOINT_STAGE),
    )

    def __init__(
        self,
        in_channels: int,
        *,
        num_queries: int = 100,
        num_keypoints: int = 17,
        sigmas: Sequence[float] | float | None = None,
        d_model: int = 256,
        pyramid_channels: Sequence[int] = PAPER_PYRAMID_CHANNELS,
        clip_channels: int = PAPER_CLIP_CHANNELS,
        memory: dict | nn.Module = BOX_MEMORY,
        decoder: dict | nn.Module = DETR_DECODER,
        head: dict | nn.Module = KEYPOINT_HEAD,
        loss_bbox_l1: dict = BOX_L1_LOSS,
        loss_bbox_giou: dict = BOX_GIOU_LOSS,
        keypoint_l1_weight: float = 2.0,
        oks_weight: float = 2.0,
        visibility_weight: float = 1.0,
        match_costs: dict = KEYPOINT_MATCH_COSTS,
        init_cfg=None,
        **legacy,
    ) -> None:
        super().__init__(in_channels, num_queries=num_queries, init_cfg=init_cfg)
        if num_keypoints <= 0:
            raise ValueError(f'num_keypoints must be positive, got {num_keypoints}')
        self.num_keypoints = num_keypoints
        blocks = compose_detr_blocks(
            type(self).__name__,
            dict(memory=BOX_MEMORY, decoder=DETR_DECODER, head=KEYPOINT_HEAD),
            dict(memory=memory, decoder=decoder, head=head),
            legacy,
            head_legacy=dict(
                box_head=('box_head',), num_point_layers=('point_decoder', 'num_layers')
            ),
        )
        blocks['head'] = keypoint_head_cfg(blocks['head'], blocks['decoder'], num_keypoints)
        self.predictor = DetrAssembly(
            in_channels,
            num_queries,
            d_model=d_model,
            pyramid_channels=pyramid_channels,
            clip_channels=clip_channels,
            **blocks,
        )
        register_legacy_keys(self)
        self.register_buffer('sigmas', _sigmas(sigmas, num_keypoints), persistent=False)
        self.loss_bbox_l1 = MODELS.build(loss_bbox_l1)
        self.loss_bbox_giou = MODELS.build(loss_bbox_giou)
        self.weights = dict(
            l1=float(keypoint_l1_weight), oks=float(oks_weight), vis=float(visibility_weight)
        )
        self.match_costs = {**KEYPOINT_MATCH_COSTS, **match_costs}

    def forward(self, queries: UnitQueries, visual: VisualContext) -> dict[str, Tensor]:
        """``boxes`` (B, Q, 4), ``keypoints`` (B, Q, K, 2), ``visibility_logits`` (B, Q, K)."""
        return self.predictor(queries, visual).outputs

    def loss(
        self, queries: UnitQueries, visual: VisualContext, batch_data_samples: SampleList
    ) -> dict[str, Tensor]:
        """Box, keypoint-L1, OKS and visibility losses against ``gt_units.keypoint``."""
        return two_phase_loss(self, queries, visual, batch_data_samples)

    def loss_costs(
        self, queries: UnitQueries, visual: VisualContext, batch_data_samples: SampleList
    ) -> MatchRequest:
        """Phase 1: outputs of the real queries, targets, box + keypoint group costs."""
        out = self(queries, visual)
        num = queries.num_queries
        if num == 0:
            zero = sum(v.sum() for v in out.values()) * 0.0
            names = ('bbox_l1', 'bbox_giou', 'l1', 'oks', 'vis')
            return MatchRequest(
                None, state=dict(losses={f'loss_keypoint_{k}': zero for k in names})
            )
        layout = query_layout(queries)
        boxes, points, vis = (  # losses in float32 (bf16 models too)
            real_slots(out[k], queries).float() for k in ('boxes', 'keypoints', 'visibility_logits')
        )
        gt = gather_unit_targets(batch_data_samples, self.unit, ['keypoints', 'bboxes'], queries)
        tgt_kpts, tgt_boxes = gt['keypoints'].float(), gt['bboxes'].float()
        if tgt_kpts.shape[1:] != (self.num_keypoints, 3):
            raise ValueError(
                f'gt_units.keypoint.keypoints must be (N, {self.num_keypoints}, 3), '
                f'got {tuple(tgt_kpts.shape)}'
            )
        labelled = tgt_kpts[..., 2] > 0
        match, mc = layout.match, self.match_costs
        assert match is not None
        costs = None
        if match.sizes:
            b, tb, p, tp, lab = select_items(
                match, boxes, xyxy_to_cxcywh(tgt_boxes), points, tgt_kpts[..., :2], labelled
            )
            slots = match_slots(match)
            costs = (
                box_group_costs(
                    b, tb, slots, l1_weight=mc['l1_weight'], giou_weight=mc['giou_weight']
                )
                + point_group_costs(p, tp, slots, tgt_visible=lab, weight=mc['point_weight'])
            ).costs
        state = dict(
            boxes=boxes, points=points, vis=vis, kpts=tgt_kpts, tboxes=tgt_boxes, lab=labelled
        )
        return MatchRequest(match, costs, dict(state, num=num))

    def loss_assigned(self, request: MatchRequest, tgt_inds: Tensor | None) -> dict[str, Tensor]:
        """Phase 2: the losses of the matched pairs (see the class docstring)."""
        st = request.state
        if 'losses' in st:
            return st['losses']
        num, ti = st['num'], tgt_inds
        tgt_kpts, tb, lab = (
            (st[k] if ti is None else st[k][ti]) for k in ('kpts', 'tboxes', 'lab')
        )
        bbox_l1, bbox_giou = matched_box_losses(
            self.loss_bbox_l1, self.loss_bbox_giou, st['boxes'], tb, num
        )
        points, vis, tgt_xy = st['points'], st['vis'], tgt_kpts[:, :, :2]
        lab_f = lab.to(points.dtype)
        kpt_l1 = ((points - tgt_xy).abs().sum(-1) * lab_f).sum() / num
        areas = (tb[:, 2] - tb[:, 0]).clamp(min=0) * (tb[:, 3] - tb[:, 1]).clamp(min=0)
        oks = keypoint_oks(points, tgt_xy, lab, areas, self.sigmas)
        oks_loss = ((1 - oks) * lab.any(-1).to(oks.dtype)).sum() / num
        vis_loss = F.binary_cross_entropy_with_logits(vis, lab_f, reduction='sum') / (
            num * self.num_keypoints
        )
        return dict(
            loss_keypoint_bbox_l1=bbox_l1,
            loss_keypoint_bbox_giou=bbox_giou,
            loss_keypoint_l1=kpt_l1 * self.weights['l1'],
            loss_keypoint_oks=oks_loss * self.weights['oks'],
            loss_keypoint_vis=vis_loss * self.weights['vis'],
        )

    @torch.no_grad()
    def predict(
        self,
        queries: UnitQueries,
        visual: VisualContext,
        batch_data_samples: SampleList,
        rescale: bool = True,
    ) -> list[InstanceData]:
        """One ``InstanceData(keypoints, bboxes, scores)`` per sample (see the class docstring)."""
        out = self(queries, visual)
        mask = queries.mask.bool()
        boxes = per_sample(box_cxcywh_to_xyxy(out['boxes'].float()), mask)
        points = per_sample(out['keypoints'].float(), mask)
        probs = per_sample(out['visibility_logits'].float().sigmoid(), mask)
        results = []
        for sample, box, xy, prob in zip(batch_data_samples, boxes, points, probs, strict=True):
            if rescale:
                height, width, side = sample_frame(sample)
                xy = torch.minimum((xy * side).clamp(min=0), xy.new_tensor([width, height]))
            else:
                xy = xy.clamp(0, 1)
            results.append(
                InstanceData(
                    keypoints=torch.cat([xy, prob[..., None]], -1),
                    bboxes=rescale_boxes(box, sample, rescale),
                    scores=prob.mean(-1),
                )
            )
        return results

    def init_from_box_decoder(
        self, source: nn.Module | Mapping[str, Tensor], *, copy_point_decoder: bool = True
    ) -> dict[str, list[str]]:
        """Copy the weights of a trained :class:`BoxUnitDecoder` (stage 3 initialisation).

        Every tensor of the box stage (``predictor.*`` but the keypoint modules of the head) whose
        name and shape match is copied (e.g. the slot embedding is skipped when ``num_queries``
        differs). With ``copy_point_decoder``, the box stage's decoder layers also initialise the
        head's ``point_decoder`` where shapes match. Box checkpoints of the layout before the
        shared assembly (``predictor.box_head.*``) load too.

        Args:
            source (nn.Module | Mapping[str, Tensor]): A ``BoxUnitDecoder``, its state dict, or a
                bare assembly state dict (keys without the ``predictor.`` prefix).
            copy_point_decoder (bool): See above. Defaults to True.

        Returns:
            dict[str, list[str]]: ``loaded`` (own keys set), ``skipped`` (source keys not used:
            unknown name or shape mismatch) and ``missing`` (own box-stage keys left as they
            were).
        """
        state = source.state_dict() if isinstance(source, nn.Module) else dict(source)
        own = self.state_dict()
        new, skipped = {}, []
        for key, val in state.items():
            name = key if key.startswith('predictor.') else f'predictor.{key}'
            name = next(iter(rename_legacy_keys({name: None}, BoxUnitDecoder.legacy_keys)))
            targets = [name]
            if copy_point_decoder and name.startswith('predictor.decoder.'):
                targets.append('predictor.head.point_decoder.' + name[len('predictor.decoder.') :])
            hits = [t for t in targets if t in own and own[t].shape == val.shape]
            new.update({t: val for t in hits})
            if name not in hits:
                skipped.append(key)
        self.load_state_dict(new, strict=False)
        stage = tuple(f'predictor.head.{n}.' for n in KEYPOINT_STAGE)
        missing = sorted(
            k
            for k in own
            if k.startswith('predictor.') and not k.startswith(stage) and k not in new
        )
        print_log(
            f'KeypointUnitDecoder.init_from_box_decoder: {len(new)} tensors loaded, '
            f'{len(skipped)} skipped, {len(missing)} box-stage tensors missing',
            logger='current',
        )
        return dict(loaded=sorted(new), skipped=skipped, missing=missing)
