# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""The keypoint unit's head on the shared DETR assembly: a box per query, then K keypoint queries
per person decoded over the same memory."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from mmengine.model import BaseModule
from torch import Tensor, nn

from mmrefvlm.registry import MODELS
from mmrefvlm.structures import UnitQueries, VisualContext

from .box import box_regressor, regress_boxes
from .detr import DETR_DECODER, build_block
from .layers import MLP, FusedMemory, QueryDecoder

__all__ = ['KeypointUnitHead', 'KEYPOINT_HEAD', 'KEYPOINT_STAGE', 'keypoint_head_cfg']


@MODELS.register_module()
class KeypointUnitHead(BaseModule):
    """Head of the keypoint unit: a box per query, then K keypoint queries per person.

    1. ``box`` (the regressor of :class:`BoxUnitHead`, same module names, so
       :meth:`KeypointUnitDecoder.init_from_box_decoder` maps a box decoder's weights 1:1) gives
       each decoded query ``h`` a box.
    2. Each query spawns K keypoint queries: content ``point_in_proj(h)``, position
       ``point_embed`` (one learned embedding per keypoint type). ``point_decoder`` (a second DETR
       decoder over the same memory) lets the K queries of one person attend to each other only
       (padded persons are masked out).
    3. ``point_head`` predicts an offset in logit space from the box centre:
       ``xy = sigmoid(logit(box centre) + offset)``; ``visibility_head`` a labelled-vs-not logit.

    Args:
        d_model (int): Query width.
        num_keypoints (int): K.
        point_decoder (dict | nn.Module): The keypoint-stage :class:`~.layers.QueryDecoder`
            (arguments; ``d_model`` is filled in).
        box_head (str): ``'mlp'`` or ``'pointer'`` (:func:`~.box.box_regressor`). Defaults to
            ``'mlp'``.
    """

    def __init__(
        self,
        d_model: int,
        num_keypoints: int,
        *,
        point_decoder: dict | nn.Module,
        box_head: str = 'mlp',
    ) -> None:
        super().__init__()
        if num_keypoints <= 0:
            raise ValueError(f'num_keypoints must be positive, got {num_keypoints}')
        self.num_keypoints = num_keypoints
        self.box = box_regressor(d_model, box_head)
        self.point_in_proj = nn.Linear(d_model, d_model)
        self.point_embed = nn.Embedding(num_keypoints, d_model)
        self.point_decoder = build_block(point_decoder, QueryDecoder, d_model=d_model)
        self.point_head = MLP(d_model, d_model, 2, 3)
        self.visibility_head = nn.Linear(d_model, 1)

    def forward(
        self, hidden: Tensor, memory: FusedMemory, queries: UnitQueries, visual: VisualContext
    ) -> dict[str, Tensor]:
        """``boxes`` (B, Q, 4), ``keypoints`` (B, Q, K, 2), ``visibility_logits`` (B, Q, K)."""
        boxes = regress_boxes(self.box, hidden, memory, queries)
        (b, q, d), k = hidden.shape, self.num_keypoints
        content = self.point_in_proj(hidden)[:, :, None].expand(b, q, k, d).reshape(b, q * k, d)
        pos = self.point_embed.weight[None, None].expand(b, q, k, d).reshape(b, q * k, d)
        person_mask = queries.mask.bool()[:, :, None].expand(b, q, k).reshape(b, q * k)
        person = torch.arange(q, device=content.device)[None, :, None].expand(b, q, k)
        points_hidden = self.point_decoder(
            content, pos, person_mask, memory, groups=person.reshape(b, q * k)
        ).view(b, q, k, d)
        centre = torch.logit(boxes[..., :2], eps=1e-5)[:, :, None]  # (B, Q, 1, 2)
        points = (centre + self.point_head(points_hidden)).sigmoid()
        return dict(
            boxes=boxes,
            keypoints=points,
            visibility_logits=self.visibility_head(points_hidden)[..., 0],
        )


#: Modules of the keypoint stage (inside the head).
KEYPOINT_STAGE = ('point_in_proj', 'point_embed', 'point_decoder', 'point_head', 'visibility_head')
KEYPOINT_HEAD = dict(type=KeypointUnitHead, box_head='mlp', point_decoder=dict(num_layers=6))


def keypoint_head_cfg(head, decoder, num_keypoints: int):
    """Fill ``num_keypoints`` and the point decoder's unset arguments (those of ``decoder``)."""
    if not isinstance(head, Mapping):
        return head
    head = dict(head)
    if head.setdefault('num_keypoints', num_keypoints) != num_keypoints:
        raise ValueError(
            f'head num_keypoints={head["num_keypoints"]} differs from num_keypoints={num_keypoints}'
        )
    point = head.get('point_decoder')
    if isinstance(point, Mapping) and 'type' not in point:
        box_stage = decoder if isinstance(decoder, Mapping) and 'type' not in decoder else {}
        inherited = {k: v for k, v in {**DETR_DECODER, **box_stage}.items() if k != 'num_layers'}
        head['point_decoder'] = {**inherited, **point}
    return head
