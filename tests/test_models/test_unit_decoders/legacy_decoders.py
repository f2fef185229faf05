# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""The box, keypoint and mask decoders' modules and ``forward`` as they were before the shared
DETR assembly (issue 18, main at d1cdeac), frozen as a reference.

Each ``Legacy*`` class builds the old module tree (so its ``state_dict`` has the old key layout)
in the old construction order and computes the old ``forward``. The refactored decoders must load
these state dicts (through their legacy-key pre-hook) and give the same outputs, losses and
predictions. Only the building blocks of ``layers.py`` (unchanged by the refactor) are imported.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from mmrefvlm.models.unit_decoders.layers import (
    MLP,
    FPNPixelDecoder,
    FusedMemory,
    PyramidFusion,
    QueryDecoder,
    QueryProjection,
)
from mmrefvlm.models.unit_decoders.utils import xyxy_to_cxcywh


class LegacyPointerBoxHead(nn.Module):
    def __init__(self, d_model: int) -> None:
        super().__init__()
        self.query = nn.Linear(d_model, d_model)
        self.key = nn.Linear(d_model, d_model)
        self.ltrb = MLP(d_model, d_model, 4, 2)
        self.scale = d_model**-0.5

    def forward(self, hidden: Tensor, memory: FusedMemory) -> Tensor:
        mem = memory.memory
        logits = torch.einsum('bqd,bnd->bqn', self.query(hidden), self.key(mem)) * self.scale
        if memory.padding_mask is not None:
            logits = logits.masked_fill(memory.padding_mask[:, None], float('-inf'))
        weights = logits.float().softmax(-1)
        h, w = memory.hw
        ys = (torch.arange(h, device=mem.device, dtype=torch.float32) + 0.5) / h
        xs = (torch.arange(w, device=mem.device, dtype=torch.float32) + 0.5) / w
        cy, cx = torch.meshgrid(ys, xs, indexing='ij')
        centres = torch.stack([cx.flatten(), cy.flatten()], -1)
        dist = self.ltrb(mem).float().sigmoid()
        cells = torch.cat([centres - dist[..., :2], centres + dist[..., 2:]], -1).clamp(0, 1)
        xyxy = torch.einsum('bqn,bnc->bqc', weights, cells)
        return xyxy_to_cxcywh(xyxy).clamp(1e-4, 1 - 1e-4).to(hidden.dtype)


class LegacyDetrBoxPredictor(nn.Module):
    def __init__(
        self,
        in_channels,
        num_queries,
        *,
        d_model,
        num_layers,
        num_heads,
        ffn_dim,
        dropout,
        pyramid_channels,
        clip_channels,
        memory_levels,
        memory_use_clip,
        memory_size,
        mask_memory_padding=True,
        box_head='mlp',
    ):
        super().__init__()
        self.query_proj = QueryProjection(in_channels, d_model, num_queries)
        self.memory = PyramidFusion(
            pyramid_channels,
            clip_channels,
            d_model,
            levels=memory_levels,
            use_clip=memory_use_clip,
            size=memory_size,
            mask_padding=mask_memory_padding,
        )
        self.decoder = QueryDecoder(d_model, num_layers, num_heads, ffn_dim, dropout)
        self.box_head = (
            MLP(d_model, d_model, 4, 3) if box_head == 'mlp' else LegacyPointerBoxHead(d_model)
        )

    def forward(self, queries, visual):
        content, query_pos = self.query_proj(queries)
        memory = self.memory(visual)
        hidden = self.decoder(content, query_pos, queries.mask.bool(), memory)
        if isinstance(self.box_head, LegacyPointerBoxHead):
            boxes = self.box_head(hidden, memory)
        else:
            boxes = self.box_head(hidden).sigmoid()
        boxes = boxes * queries.mask[..., None].to(boxes.dtype)
        return hidden, boxes, memory


_BOX_KEYS = (
    'd_model',
    'num_layers',
    'num_heads',
    'ffn_dim',
    'dropout',
    'pyramid_channels',
    'clip_channels',
    'memory_levels',
    'memory_use_clip',
    'memory_size',
    'box_head',
)


def _box_kwargs(cfg: dict) -> dict:
    defaults = dict(memory_levels=(0, 1, 2), memory_use_clip=True, memory_size=128)
    return {**defaults, **{k: v for k, v in cfg.items() if k in _BOX_KEYS}}


class LegacyBox(nn.Module):
    """Old ``BoxUnitDecoder``: ``predictor.{query_proj,memory,decoder,box_head}``."""

    def __init__(self, cfg: dict) -> None:
        super().__init__()
        self.predictor = LegacyDetrBoxPredictor(
            cfg['in_channels'], cfg['num_queries'], **_box_kwargs(cfg)
        )

    def forward(self, queries, visual):
        return dict(boxes=self.predictor(queries, visual)[1])


class LegacyKeypoint(nn.Module):
    """Old ``KeypointUnitDecoder``: box predictor + ``point_*`` and ``visibility_head``."""

    def __init__(self, cfg: dict) -> None:
        super().__init__()
        d = cfg['d_model']
        self.num_keypoints = k = cfg['num_keypoints']
        self.predictor = LegacyDetrBoxPredictor(
            cfg['in_channels'], cfg['num_queries'], **_box_kwargs(cfg)
        )
        self.point_in_proj = nn.Linear(d, d)
        self.point_embed = nn.Embedding(k, d)
        self.point_decoder = QueryDecoder(
            d, cfg['num_point_layers'], cfg['num_heads'], cfg['ffn_dim'], cfg['dropout']
        )
        self.point_head = MLP(d, d, 2, 3)
        self.visibility_head = nn.Linear(d, 1)

    def forward(self, queries, visual):
        hidden0, boxes, memory = self.predictor(queries, visual)
        (b, q, d), k = hidden0.shape, self.num_keypoints
        content = self.point_in_proj(hidden0)[:, :, None].expand(b, q, k, d).reshape(b, q * k, d)
        pos = self.point_embed.weight[None, None].expand(b, q, k, d).reshape(b, q * k, d)
        person_mask = queries.mask.bool()[:, :, None].expand(b, q, k).reshape(b, q * k)
        person = torch.arange(q, device=content.device)[None, :, None].expand(b, q, k)
        hidden = self.point_decoder(
            content, pos, person_mask, memory, groups=person.reshape(b, q * k)
        ).view(b, q, k, d)
        centre = torch.logit(boxes[..., :2], eps=1e-5)[:, :, None]
        points = (centre + self.point_head(hidden)).sigmoid()
        return dict(
            boxes=boxes, keypoints=points, visibility_logits=self.visibility_head(hidden)[..., 0]
        )


class LegacyMask(nn.Module):
    """Old ``MaskUnitDecoder``: ``query_proj``, ``memory``, ``decoder``, ``pixel_decoder``,
    ``mask_embed`` at the top level."""

    def __init__(self, cfg: dict) -> None:
        super().__init__()
        d = cfg['d_model']
        self.query_proj = QueryProjection(cfg['in_channels'], d, cfg['num_queries'])
        self.memory = PyramidFusion(
            cfg['pyramid_channels'],
            cfg['clip_channels'],
            d,
            levels=cfg.get('memory_levels', ()),
            use_clip=cfg.get('memory_use_clip', True),
            size=cfg.get('memory_size'),
            mask_padding=True,
        )
        self.decoder = QueryDecoder(
            d, cfg['num_layers'], cfg['num_heads'], cfg['ffn_dim'], cfg['dropout']
        )
        self.pixel_decoder = FPNPixelDecoder(
            cfg['pyramid_channels'],
            cfg['clip_channels'],
            levels=cfg.get('pixel_levels', (0, 1, 2)),
            use_clip=cfg.get('pixel_use_clip', True),
            feat_channels=cfg.get('fpn_dim', 256),
            out_channels=cfg.get('mask_dim', 256),
        )
        self.mask_embed = MLP(d, d, cfg.get('mask_dim', 256), 3)

    def forward(self, queries, visual):
        content, query_pos = self.query_proj(queries)
        hidden = self.decoder(content, query_pos, queries.mask.bool(), self.memory(visual))
        pixels = self.pixel_decoder(visual)
        return dict(mask_logits=torch.einsum('bqc,bchw->bqhw', self.mask_embed(hidden), pixels))


LEGACY = dict(box=LegacyBox, keypoint=LegacyKeypoint, mask=LegacyMask)
