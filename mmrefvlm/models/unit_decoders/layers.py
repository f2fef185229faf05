# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""Building blocks shared by the visual-unit decoders (written once, used by all four).

* :class:`QueryProjection`: ``<REF>`` state -> query content (``Linear``) + learned slot embedding.
* :class:`PyramidFusion`: resize-concat of pyramid levels (+ CLIP grid) -> ``Linear`` -> memory
  tokens with a 2-D sine position code and a key padding mask for the square-frame padding.
* :class:`QueryDecoder`: mmdet's ``DetrTransformerDecoder`` (post-norm DETR layers) with padded
  queries masked out of self-attention and zeroed at the output.
* :class:`FPNPixelDecoder`: MaskFormer-style FPN over the pyramid (+ CLIP grid) -> dense features.

mmdet components are imported here and nowhere else in the decoders (HOUSE_STYLE: keep every mmdet
import behind our own modules); ``import mmrefvlm`` installs the mmcv-lite guard they need.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F
from mmdet.models.layers import MLP, DetrTransformerDecoder, SinePositionalEncoding
from mmengine.model import BaseModule
from torch import Tensor, nn

from mmrefvlm.registry import MODELS
from mmrefvlm.structures import UnitQueries, VisualContext

__all__ = [
    'MLP',
    'QueryProjection',
    'FusedMemory',
    'PyramidFusion',
    'QueryDecoder',
    'FPNPixelDecoder',
    'conv_norm_act',
    'valid_region_mask',
    'self_attention_mask',
    'check_levels',
]


def valid_region_mask(valid_hw: Tensor, height: int, width: int) -> Tensor:
    """Cells of an ``height x width`` grid over the square frame whose centre lies in the image.

    The image occupies the top-left ``valid_hw`` fraction of the square frame. The first row and
    column always count as valid, so no map is ever entirely masked.

    Args:
        valid_hw (Tensor): (N, 2) float in (0, 1], image fraction of the frame's height and width.
        height (int): Grid rows.
        width (int): Grid columns.

    Returns:
        Tensor: (N, height, width) bool, True inside the image.
    """
    dev = valid_hw.device
    rows = (torch.arange(height, device=dev, dtype=torch.float32) + 0.5) / height
    cols = (torch.arange(width, device=dev, dtype=torch.float32) + 0.5) / width
    vh, vw = valid_hw[:, 0:1].float(), valid_hw[:, 1:2].float()
    row_ok = (rows[None] < vh) | (torch.arange(height, device=dev) == 0)[None]
    col_ok = (cols[None] < vw) | (torch.arange(width, device=dev) == 0)[None]
    return row_ok[:, :, None] & col_ok[:, None, :]


def self_attention_mask(key_mask: Tensor, num_heads: int, groups: Tensor | None = None) -> Tensor:
    """Boolean self-attention mask that hides padded keys (and other groups' keys).

    ``allowed[b, i, j] = key_mask[b, j] and groups[b, i] == groups[b, j]``, and always ``i == j``
    so that a padded query (whose output is discarded) never has an empty softmax row (NaN).

    Args:
        key_mask (Tensor): (B, L) bool, True for real queries.
        num_heads (int): Attention heads (the mask is repeated per head).
        groups (Tensor, optional): (B, L) long; queries attend only inside their group.

    Returns:
        Tensor: (B * num_heads, L, L) bool, True where attention is NOT allowed (PyTorch
        ``nn.MultiheadAttention`` ``attn_mask`` convention), batch-major like PyTorch expects.
    """
    num = key_mask.shape[1]
    allowed = key_mask.bool()[:, None, :].expand(-1, num, -1)
    if groups is not None:
        allowed = allowed & (groups[:, :, None] == groups[:, None, :])
    allowed = allowed | torch.eye(num, dtype=torch.bool, device=key_mask.device)[None]
    return (~allowed).repeat_interleave(num_heads, dim=0)


def check_levels(levels: Sequence[int], num_levels: int, what: str) -> tuple[int, ...]:
    """Validate strictly increasing pyramid level indices (finest first)."""
    levels = tuple(int(lv) for lv in levels)
    if any(lv < 0 or lv >= num_levels for lv in levels) or list(levels) != sorted(set(levels)):
        raise ValueError(
            f'{what} must be strictly increasing indices into the {num_levels} '
            f'pyramid levels, got {levels}'
        )
    return levels


class QueryProjection(BaseModule):
    """``<REF>`` states -> query content and a learned slot position embedding.

    The slot index of a real query is its rank among the sample's real queries (0 for the first
    ``<REF>`` of this unit), so it does not depend on where padding slots sit.

    Args:
        in_channels (int): Width of the ``<REF>`` states (LLM hidden size).
        d_model (int): Decoder width.
        num_queries (int): Number of slot embeddings (the most real queries per sample).
    """

    def __init__(self, in_channels: int, d_model: int, num_queries: int) -> None:
        super().__init__()
        self.in_channels, self.num_queries = in_channels, num_queries
        self.proj = nn.Linear(in_channels, d_model)
        self.slot_embed = nn.Embedding(num_queries, d_model)

    def forward(self, queries: UnitQueries) -> tuple[Tensor, Tensor]:
        """Project the routed queries.

        Args:
            queries (UnitQueries): ``embeds`` (B, Q, in_channels), ``mask`` (B, Q) bool.

        Returns:
            tuple[Tensor, Tensor]: ``content`` and ``query_pos``, (B, Q, d_model) float each.
        """
        embeds, mask = queries.embeds, queries.mask.bool()
        if embeds.dim() != 3 or embeds.shape[-1] != self.in_channels:
            raise ValueError(
                f'queries.embeds must be (B, Q, {self.in_channels}), got {tuple(embeds.shape)}'
            )
        if mask.shape != embeds.shape[:2]:
            raise ValueError(
                f'queries.mask must be {tuple(embeds.shape[:2])}, got {tuple(mask.shape)}'
            )
        if queries.layout is not None:  # known on the host: no device read
            most = max(queries.layout.counts, default=0)
        else:
            most = int(mask.sum(1).max()) if mask.numel() else 0
        if most > self.num_queries:
            raise ValueError(
                f'a sample has {most} real queries but the decoder has only '
                f'{self.num_queries} slots (num_queries)'
            )
        content = self.proj(embeds.to(self.proj.weight.dtype))
        slots = (mask.long().cumsum(1) - 1).clamp(min=0)
        return content, self.slot_embed(slots)


class FusedMemory(NamedTuple):
    """Memory tokens for cross-attention (output of :class:`PyramidFusion`)."""

    memory: Tensor  # (B, H*W, D) float
    pos: Tensor  # (B, H*W, D) float, 2-D sine position code over the square frame
    padding_mask: Tensor | None  # (B, H*W) bool, True on cells of the padding (None: no mask)
    hw: tuple[int, int]  # (H, W) of the memory grid


def _resize(x: Tensor, size: tuple[int, int]) -> Tensor:
    """Area pooling when shrinking (no aliasing), bilinear when growing."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    if x.shape[-2] >= size[0] and x.shape[-1] >= size[1]:
        return F.adaptive_avg_pool2d(x, size)
    return F.interpolate(x, size=size, mode='bilinear', align_corners=False)


@MODELS.register_module()
class PyramidFusion(BaseModule):
    """Resize-concat of pyramid levels and the CLIP grid, projected to memory tokens.

    REF-VLM's box decoder: ConvNeXt stages 0-2 + CLIP at 128x128, ``Linear(2368 -> 256)`` and a
    DETR sine position code; its mask decoder: the CLIP grid alone through a 1x1 projection.

    Args:
        pyramid_channels (Sequence[int]): Channels of every pyramid level, finest first.
        clip_channels (int): Channels of the CLIP grid.
        d_model (int): Output width (even: half the sine code encodes y, half x).
        levels (Sequence[int]): Pyramid levels to fuse, strictly increasing. Defaults to (0, 1, 2).
        use_clip (bool): Also fuse the CLIP grid. Defaults to True.
        size (int, optional): Side of the memory grid; None uses the first fused input's size
            (the finest chosen level, or the CLIP grid). Defaults to None.
        mask_padding (bool): Hide memory cells of the square-frame padding from cross-attention
            (DETR's pixel mask, from ``valid_hw``). Defaults to True.
    """

    def __init__(
        self,
        pyramid_channels: Sequence[int],
        clip_channels: int,
        d_model: int,
        *,
        levels: Sequence[int] = (0, 1, 2),
        use_clip: bool = True,
        size: int | None = None,
        mask_padding: bool = True,
    ) -> None:
        super().__init__()
        self.levels = check_levels(levels, len(pyramid_channels), 'memory levels')
        if not self.levels and not use_clip:
            raise ValueError('PyramidFusion needs at least one pyramid level or use_clip=True')
        if d_model % 2:
            raise ValueError(f'd_model must be even for the 2-D sine code, got {d_model}')
        if size is not None and size <= 0:
            raise ValueError(f'memory size must be positive, got {size}')
        self.use_clip, self.size, self.mask_padding = use_clip, size, mask_padding
        in_dims = sum(pyramid_channels[lv] for lv in self.levels)
        in_dims += clip_channels if use_clip else 0
        self.proj = nn.Linear(in_dims, d_model)
        self.pos_encoding = SinePositionalEncoding(num_feats=d_model // 2, normalize=True)

    def forward(self, visual: VisualContext) -> FusedMemory:
        """Fuse the visual features of ``visual`` into memory tokens (see :class:`FusedMemory`)."""
        feats = [visual.pyramid[lv] for lv in self.levels]
        if self.use_clip:
            feats.append(visual.clip)
        hw: tuple[int, int]
        if self.size is not None:
            hw = (self.size, self.size)
        else:
            hw = (feats[0].shape[-2], feats[0].shape[-1])
        dtype = self.proj.weight.dtype
        x = torch.cat([_resize(f.to(dtype), hw) for f in feats], dim=1)  # (B, C_in, H, W)
        memory = self.proj(x.flatten(2).transpose(1, 2))  # (B, HW, D)
        pos = self.pos_encoding(mask=None, input=x).to(dtype)
        pos = pos.flatten(2).transpose(1, 2)
        padding = None
        if self.mask_padding:
            padding = ~valid_region_mask(visual.valid_hw, *hw).flatten(1)
        return FusedMemory(memory, pos, padding, hw)


@MODELS.register_module()
class QueryDecoder(BaseModule):
    """DETR decoder (mmdet ``DetrTransformerDecoder``) with masked padded queries.

    Padded queries are removed from every self-attention (a 3-D ``self_attn_mask``: real queries
    never attend to them) and their outputs are zeroed, so they cannot influence real queries.

    Args:
        d_model (int): Width. Defaults to 256.
        num_layers (int): Decoder layers. Defaults to 6.
        num_heads (int): Attention heads. Defaults to 8.
        ffn_dim (int): FFN hidden width. Defaults to 2048.
        dropout (float): Dropout after attention and in the FFN (HF DETR's ``dropout``; the
            attention-probability dropout is 0 as in REF-VLM). Defaults to 0.1.
    """

    def __init__(
        self,
        d_model: int = 256,
        num_layers: int = 6,
        num_heads: int = 8,
        ffn_dim: int = 2048,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        if num_layers <= 0 or num_heads <= 0 or d_model % num_heads:
            raise ValueError(
                f'need num_layers > 0 and d_model divisible by num_heads, got '
                f'num_layers={num_layers}, d_model={d_model}, num_heads={num_heads}'
            )
        self.num_heads = num_heads

        def attn() -> dict:
            return dict(
                embed_dims=d_model,
                num_heads=num_heads,
                attn_drop=0.0,
                proj_drop=0.0,
                dropout_layer=dict(type='Dropout', drop_prob=dropout),
                batch_first=True,
            )

        layer_cfg = dict(
            self_attn_cfg=attn(),
            cross_attn_cfg=attn(),
            ffn_cfg=dict(
                embed_dims=d_model,
                feedforward_channels=ffn_dim,
                num_fcs=2,
                ffn_drop=dropout,
                act_cfg=dict(type='ReLU', inplace=True),
            ),
        )
        self.layers = DetrTransformerDecoder(num_layers, layer_cfg, return_intermediate=False)

    def init_weights(self) -> None:
        """Xavier-uniform on every matrix, as DETR initialises its transformer."""
        super().init_weights()
        for p in self.layers.parameters():
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)

    def forward(
        self,
        query: Tensor,
        query_pos: Tensor,
        query_mask: Tensor,
        memory: FusedMemory,
        groups: Tensor | None = None,
    ) -> Tensor:
        """Decode.

        Args:
            query (Tensor): (B, L, D) float, query content.
            query_pos (Tensor): (B, L, D) float, query position embedding.
            query_mask (Tensor): (B, L) bool, True for real queries.
            memory (FusedMemory): Cross-attention memory.
            groups (Tensor, optional): (B, L) long, restrict self-attention to equal groups.

        Returns:
            Tensor: (B, L, D) float, decoded queries; zeros on padded queries.
        """
        attn_mask = self_attention_mask(query_mask, self.num_heads, groups)
        out = self.layers(
            query=query,
            key=memory.memory,
            value=memory.memory,
            query_pos=query_pos,
            key_pos=memory.pos,
            key_padding_mask=memory.padding_mask,
            self_attn_mask=attn_mask,
        )[0]
        return out * query_mask[..., None].to(out.dtype)


def conv_norm_act(in_ch: int, out_ch: int, kernel: int, relu: bool) -> nn.Sequential:
    """Conv (no bias, 'same' padding) + GroupNorm (gcd(32, C) groups) [+ ReLU]."""
    mods = [
        nn.Conv2d(in_ch, out_ch, kernel, padding=kernel // 2, bias=False),
        nn.GroupNorm(math.gcd(32, out_ch), out_ch),
    ]
    if relu:
        mods.append(nn.ReLU(inplace=True))
    return nn.Sequential(*mods)


class FPNPixelDecoder(BaseModule):
    """MaskFormer-style FPN pixel decoder over the pyramid (and the CLIP grid).

    A 3x3 stem on the coarsest input (the CLIP grid when ``use_clip``, else the last chosen
    level), then for each chosen level from coarse to fine: ``lateral 1x1 (GN)`` + nearest upsample
    of the running map, ``3x3 conv GN ReLU``; finally a 3x3 projection. The output has the
    resolution of the finest chosen level (REF-VLM: CLIP 24x24 stem, ConvNeXt stages 2, 1, 0 ->
    256 x 128 x 128).

    Args:
        pyramid_channels (Sequence[int]): Channels of every pyramid level, finest first.
        clip_channels (int): Channels of the CLIP grid.
        levels (Sequence[int]): Pyramid levels used, strictly increasing. Defaults to (0, 1, 2).
        use_clip (bool): Start the top-down path from the CLIP grid. Defaults to True.
        feat_channels (int): FPN width. Defaults to 256.
        out_channels (int): Output (pixel embedding) width. Defaults to 256.
    """

    def __init__(
        self,
        pyramid_channels: Sequence[int],
        clip_channels: int,
        *,
        levels: Sequence[int] = (0, 1, 2),
        use_clip: bool = True,
        feat_channels: int = 256,
        out_channels: int = 256,
    ) -> None:
        super().__init__()
        levels = check_levels(levels, len(pyramid_channels), 'pixel decoder levels')
        if not use_clip and not levels:
            raise ValueError('FPNPixelDecoder needs pyramid levels or use_clip=True')
        self.use_clip = use_clip
        if use_clip:
            self.stem_level, self.lateral_levels = None, levels
            stem_in = clip_channels
        else:
            self.stem_level, self.lateral_levels = levels[-1], levels[:-1]
            stem_in = pyramid_channels[levels[-1]]
        self.stem = conv_norm_act(stem_in, feat_channels, 3, relu=True)
        self.laterals = nn.ModuleList(
            conv_norm_act(pyramid_channels[lv], feat_channels, 1, relu=False)
            for lv in self.lateral_levels
        )
        self.outputs = nn.ModuleList(
            conv_norm_act(feat_channels, feat_channels, 3, relu=True) for _ in self.lateral_levels
        )
        self.out_proj = nn.Conv2d(feat_channels, out_channels, 3, padding=1)

    def forward(self, visual: VisualContext) -> Tensor:
        """Dense features.

        Args:
            visual (VisualContext): ``pyramid`` (B, C_l, H_l, W_l) finest first, ``clip``.

        Returns:
            Tensor: (B, out_channels, H, W) float at the finest used resolution.
        """
        dtype = self.out_proj.weight.dtype
        if self.use_clip:
            src = visual.clip
        else:
            assert self.stem_level is not None  # always set when use_clip is False
            src = visual.pyramid[self.stem_level]
        x = self.stem(src.to(dtype))
        for i in reversed(range(len(self.lateral_levels))):
            lat = self.laterals[i](visual.pyramid[self.lateral_levels[i]].to(dtype))
            x = self.outputs[i](lat + F.interpolate(x, size=lat.shape[-2:], mode='nearest'))
        return self.out_proj(x)
