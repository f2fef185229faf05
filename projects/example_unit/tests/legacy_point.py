# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""The ``point`` decoder's modules and ``forward`` as they were before it moved onto the core DETR
assembly (issue 18, main at d1cdeac), frozen as a reference: its state dict has the old key layout
(``query_proj``, ``memory``, ``decoder``, ``head`` at the top level)."""

from __future__ import annotations

import torch
from torch import nn

from mmrefvlm.models.unit_decoders import PyramidFusion, QueryDecoder, QueryProjection
from mmrefvlm.models.unit_decoders.layers import MLP


class LegacyPointerPointHead(nn.Module):
    def __init__(self, d_model, offset_range=0.25):
        super().__init__()
        self.query = nn.Linear(d_model, d_model)
        self.key = nn.Linear(d_model, d_model)
        self.offset = MLP(d_model, d_model, 2, 2)
        self.offset_range = offset_range
        self.scale = d_model**-0.5

    def forward(self, hidden, memory):
        mem = memory.memory
        logits = torch.einsum('bqd,bnd->bqn', self.query(hidden), self.key(mem)).float()
        logits = logits * self.scale
        if memory.padding_mask is not None:
            logits = logits.masked_fill(memory.padding_mask[:, None], -1e4)
        weights = logits.softmax(-1)
        offsets = self.offset(mem).float().tanh() * self.offset_range
        h, w = memory.hw
        ys = (torch.arange(h, dtype=torch.float32) + 0.5) / h
        xs = (torch.arange(w, dtype=torch.float32) + 0.5) / w
        cy, cx = torch.meshgrid(ys, xs, indexing='ij')
        centres = torch.stack([cx.flatten(), cy.flatten()], -1)
        cells = centres[None] + offsets
        return torch.einsum('bqn,bnc->bqc', weights, cells).clamp(0, 1), logits


class LegacyPoint(nn.Module):
    """Old ``PointUnitDecoder`` module tree and ``forward`` (flat config keys)."""

    def __init__(self, cfg):
        super().__init__()
        d = cfg['d_model']
        self.query_proj = QueryProjection(cfg['in_channels'], d, cfg['num_queries'])
        self.memory = PyramidFusion(
            cfg['pyramid_channels'],
            cfg['clip_channels'],
            d,
            levels=cfg['memory_levels'],
            use_clip=True,
            size=cfg['memory_size'],
            mask_padding=True,
        )
        layers = cfg['num_layers']
        self.decoder = (
            QueryDecoder(d, layers, cfg['num_heads'], cfg['ffn_dim'], cfg['dropout'])
            if layers > 0
            else None
        )
        self.head = LegacyPointerPointHead(d)

    def forward(self, queries, visual):
        points, logits, _ = self._decode(queries, visual)
        return dict(points=points, logits=logits)

    def _decode(self, queries, visual):
        content, query_pos = self.query_proj(queries)
        memory = self.memory(visual)
        mask = queries.mask.bool()
        if self.decoder is not None:
            hidden = self.decoder(content, query_pos, mask, memory)
        else:
            hidden = (content + query_pos) * mask[..., None].to(content.dtype)
        points, logits = self.head(hidden, memory)
        return points * mask[..., None], logits, memory
