# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""``CrossAttnResampler``: Qwen-VL's vision-language adapter as a ``RefVLM`` projector.

Qwen-VL (Bai et al., 2023, Sec. 2.1) compresses the ViT's patch features to a fixed number of
image tokens with "a single-layer cross-attention module": 256 trainable query vectors attend
to the patch features (keys and values), with 2-D absolute positional encodings added to the
queries and the keys. SAM4MLLM trains this resampler together with LoRA (SAM4MLLM paper,
Sec. 4.1: "adjust only the visual resampler of MLLM together with the LoRA adapter").
"""

from __future__ import annotations

import math

import torch
from mmengine.model import BaseModule
from torch import Tensor, nn

from mmrefvlm.registry import MODELS


def sincos_2d(side: int, dim: int, *, device=None, dtype=torch.float32) -> Tensor:
    """Fixed 2-D sine-cosine position code of a ``side`` x ``side`` grid, row-major.

    The first half of the ``dim`` channels encodes the row, the second half the column; each half
    is ``sin`` then ``cos`` of the position times ``10000 ** (-i / (dim / 4))``.

    Returns:
        Tensor: (side * side, dim).
    """
    if dim % 4:
        raise ValueError(f'the 2-D sine-cosine code needs dim divisible by 4, got {dim}')
    quarter = dim // 4
    omega = 10000.0 ** (-torch.arange(quarter, device=device, dtype=torch.float32) / quarter)
    pos = torch.arange(side, device=device, dtype=torch.float32)
    rows, cols = torch.meshgrid(pos, pos, indexing='ij')

    def code(p: Tensor) -> Tensor:
        angle = p.reshape(-1, 1) * omega
        return torch.cat([angle.sin(), angle.cos()], dim=1)

    return torch.cat([code(rows), code(cols)], dim=1).to(dtype)


@MODELS.register_module()
class CrossAttnResampler(BaseModule):
    """Learned queries cross-attending to a square grid of vision features (Qwen-VL's adapter).

    ``(B, N, in_channels)`` patch features (``N`` a square: the encoder's grid, row-major) become
    ``(B, num_queries, out_channels)`` LLM tokens: the keys / values are the features projected
    to ``out_channels`` (no bias) and LayerNormed; the queries are learned and LayerNormed; fixed
    2-D sine-cosine codes are added to the queries (their own ``sqrt(num_queries)`` grid) and to
    the keys (the feature grid); one multi-head attention, then LayerNorm and a bias-free linear
    projection. Qwen-VL keeps its query code as a frozen parameter and interpolates one 16 x 16
    key code to larger grids; here both are buffers computed for the grid at hand, so they hold
    no parameter.

    ``RefVLM`` also sends its visual-prompt tokens through the projector; this one maps any
    square token set to ``num_queries`` tokens, so it suits models without visual prompts
    (SAM4MLLM).

    Args:
        in_channels (int): Vision feature width (1664 for Qwen-VL's ViT-bigG).
        out_channels (int): LLM hidden size (4096 for Qwen-7B).
        num_queries (int): Output tokens, a square number. Defaults to 256 (Qwen-VL).
        head_dim (int): Attention head width; ``out_channels / head_dim`` heads. Defaults to
            128 (Qwen-VL: 32 heads at 4096).
        eps (float): LayerNorm epsilon. Defaults to 1e-6 (Qwen-VL).
        init_cfg (dict, optional): MMEngine init config.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        num_queries: int = 256,
        head_dim: int = 128,
        eps: float = 1e-6,
        init_cfg=None,
    ) -> None:
        super().__init__(init_cfg=init_cfg)
        side = math.isqrt(num_queries)
        if num_queries < 1 or side * side != num_queries:
            raise ValueError(f'num_queries must be a positive square number, got {num_queries}')
        if head_dim < 1 or out_channels % head_dim:
            raise ValueError(f'out_channels={out_channels} is not a multiple of {head_dim=}')
        self.in_channels, self.out_channels = in_channels, out_channels
        self.num_queries = num_queries
        self.query = nn.Parameter(torch.empty(num_queries, out_channels))
        nn.init.trunc_normal_(self.query, std=0.02)
        self.kv_proj = (
            nn.Linear(in_channels, out_channels, bias=False)
            if in_channels != out_channels
            else nn.Identity()
        )
        self.norm_q = nn.LayerNorm(out_channels, eps=eps)
        self.norm_kv = nn.LayerNorm(out_channels, eps=eps)
        self.attn = nn.MultiheadAttention(out_channels, out_channels // head_dim, batch_first=True)
        self.norm_out = nn.LayerNorm(out_channels, eps=eps)
        self.proj = nn.Linear(out_channels, out_channels, bias=False)
        self.register_buffer('query_pos', sincos_2d(side, out_channels), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        """(..., N, in_channels) with ``N`` a square -> (..., num_queries, out_channels)."""
        *lead, n, c = x.shape
        side = math.isqrt(n)
        if side * side != n or c != self.in_channels:
            raise ValueError(
                f'expected (..., N, {self.in_channels}) features of a square grid, got '
                f'{tuple(x.shape)}'
            )
        x = x.reshape(-1, n, c).to(self.query.dtype)
        kv = self.norm_kv(self.kv_proj(x))
        key_pos = sincos_2d(side, self.out_channels, device=x.device, dtype=kv.dtype)
        query = (self.norm_q(self.query) + self.query_pos.to(kv.dtype)).expand(len(x), -1, -1)
        out, _ = self.attn(query, kv + key_pos, kv, need_weights=False)
        return self.proj(self.norm_out(out)).reshape(*lead, self.num_queries, self.out_channels)
