# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""Parameter-free mask-guided aggregation of visual prompts (REF-VLM §4.2, Eq. 1-3; DESIGN §5).

For a prompt ``p`` on image ``b = batch_idx[p]`` with feature grid ``F = feats[b]`` (C, H, W):

1. The prompt mask is area-resized to H x W (``F.interpolate(mode='area')``: every touched cell
   keeps a share of the mask, so thin scribbles and small points survive) and normalised to sum 1
   over the grid: ``M = m / sum(m)``. An all-zero mask stays all-zero.
2. The grid is split into a true k x k block grid: cell ``(h, w)`` belongs to block
   ``(floor(h * k / H), floor(w * k / W))``, token index ``n = row * k + col`` (row-major, so the
   top-right block is token ``k - 1``).
3. ``v_n = sum_{(h, w) in block n} F[:, h, w] * M[h, w]``; the k*k tokens sum to the mask-weighted
   mean feature.
4. A fixed 2-D sinusoidal code of the slot is added: ``out_n = v_n + alpha * PE[n]``, see
   :func:`grid_position_code` for the exact formula.

This fixes the authors' implementation, whose "3x3 patches" were raster-order bands of the flattened
grid (``reshape(b, c, 9, 8, 8)`` of a 24 x 24 map), and drops their learned mask token and learned
slot embedding (Table 21: best without).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from mmengine.model import BaseModule
from torch import Tensor

from mmrefvlm.models.host_index import host_to_device
from mmrefvlm.models.matchers.group_layout import GroupSlots, group_slots, scatter_to_slots
from mmrefvlm.registry import MODELS


def grid_position_code(k: int, channels: int, temperature: float = 10000.0) -> Tensor:
    """Fixed 2-D sinusoidal code of the k x k token slots.

    With ``D = channels / 2`` and frequencies ``w_i = temperature ** (-2 i / D)`` for
    ``i = 0 .. D/2 - 1``, the 1-D code of an integer position ``x`` is
    ``e(x)[2i] = sin(x * w_i)``, ``e(x)[2i + 1] = cos(x * w_i)`` (D values). Slot ``n = r * k + c``
    (block row ``r``, block column ``c``) gets ``PE[n] = concat(e(r), e(c))``: the first half of the
    channels encodes the row, the second half the column.

    Args:
        k (int): Blocks per side.
        channels (int): C, a multiple of 4.
        temperature (float): tau. Defaults to 10000.

    Returns:
        Tensor: (k * k, C) float32.
    """
    if channels % 4:
        raise ValueError(f'channels must be a multiple of 4 for the 2-D sine code, got {channels}')
    half = channels // 2
    freqs = temperature ** (-torch.arange(0, half, 2, dtype=torch.float64) / half)  # (D/2,)
    angles = torch.arange(k, dtype=torch.float64)[:, None] * freqs[None, :]  # (k, D/2)
    code = torch.stack([angles.sin(), angles.cos()], dim=-1).flatten(1)  # (k, D)
    rows = code[:, None, :].expand(k, k, half)
    cols = code[None, :, :].expand(k, k, half)
    return torch.cat([rows, cols], dim=-1).reshape(k * k, channels).float()


def block_one_hot(height: int, width: int, k: int, device: torch.device | None = None) -> Tensor:
    """Membership of every grid cell in the k x k blocks.

    Args:
        height (int): H of the grid.
        width (int): W of the grid.
        k (int): Blocks per side (``k <= min(H, W)``).
        device (torch.device, optional): Device of the result.

    Returns:
        Tensor: (k * k, H * W) float32, 1 where cell ``h * W + w`` lies in block
        ``floor(h * k / H) * k + floor(w * k / W)``.
    """
    rows = torch.div(torch.arange(height, device=device) * k, height, rounding_mode='floor')
    cols = torch.div(torch.arange(width, device=device) * k, width, rounding_mode='floor')
    block = (rows[:, None] * k + cols[None, :]).flatten()
    # == F.one_hot(block, k * k).T, without one_hot's host-side range checks on some devices
    return (block[None, :] == torch.arange(k * k, device=block.device)[:, None]).float()


@MODELS.register_module()
class MaskGuidedAggregation(BaseModule):
    """Turn prompt masks into ``k * k`` tokens of mask-weighted features per prompt (no parameters).

    All prompts are processed together: they are padded per image into (G, P_max, k*k, H*W)
    block-restricted weights (G = images that have prompts) and multiplied with the (G, C, H*W)
    features in one batched matmul, so no per-prompt copy of the features is made.

    Args:
        k (int): Blocks per side of the grid; ``k * k`` tokens per prompt. Defaults to 3.
        temperature (float): Temperature of the sinusoidal slot code. Defaults to 10000.
        alpha (float): Scale of the slot code added to the tokens. Defaults to 1.
        init_cfg (dict | list[dict], optional): Unused (no parameters); kept for the MMEngine API.

    Note:
        An all-zero mask (e.g. a prompt that lies entirely in the padding) gives zero features, so
        its tokens are just the position code. No warning is issued here, since checking would
        force a device sync every step; the data pipeline is where empty prompts are counted.
    """

    def __init__(
        self,
        k: int = 3,
        temperature: float = 10000.0,
        alpha: float = 1.0,
        init_cfg: dict | list[dict] | None = None,
    ) -> None:
        super().__init__(init_cfg=init_cfg)
        if not isinstance(k, int) or k < 1:
            raise ValueError(f'k must be a positive int, got {k!r}')
        if not temperature > 0:
            raise ValueError(f'temperature must be positive, got {temperature!r}')
        if not math.isfinite(alpha):
            raise ValueError(f'alpha must be finite, got {alpha!r}')
        self.k = k
        self.temperature = float(temperature)
        self.alpha = float(alpha)
        self._codes: dict[tuple, Tensor] = {}  # slot code per (channels, device, dtype)

    @property
    def num_tokens(self) -> int:
        """Tokens per prompt, ``k * k``."""
        return self.k * self.k

    def _check_inputs(self, feats: Tensor, masks: Tensor, batch_idx: Tensor) -> None:
        if feats.dim() != 4:
            raise ValueError(f'feats must be (B, C, H, W), got {tuple(feats.shape)}')
        if masks.dim() != 3:
            raise ValueError(f'masks must be (P, Hm, Wm), got {tuple(masks.shape)}')
        if batch_idx.shape != (masks.shape[0],):
            raise ValueError(f'batch_idx must be ({masks.shape[0]},), got {tuple(batch_idx.shape)}')
        if batch_idx.dtype.is_floating_point or batch_idx.dtype == torch.bool:
            raise TypeError(f'batch_idx must be an integer tensor, got {batch_idx.dtype}')
        height, width = feats.shape[-2:]
        if min(height, width) < self.k:
            raise ValueError(f'feature grid {height}x{width} is smaller than k={self.k}')

    def normalised_masks(self, masks: Tensor, size: tuple[int, int]) -> Tensor:
        """Area-resize masks to ``size`` and normalise each to sum 1 (all-zero stays zero).

        When the mask size is an integer multiple of ``size`` (336 -> 24), area resizing is a
        block sum (its 1 / s^2 factor cancels in the normalisation), computed on the bool masks
        viewed as uint8 so the full-resolution stack is never converted to float; otherwise
        ``F.interpolate(mode='area')``.

        Args:
            masks (Tensor): (P, Hm, Wm) bool or non-negative float.
            size (tuple[int, int]): Target (H, W).

        Returns:
            Tensor: (P, H * W) float32.
        """
        (height, width), (mask_h, mask_w) = size, masks.shape[-2:]
        num = masks.shape[0]
        if (mask_h, mask_w) == (height, width):
            weights = masks.float()
        elif mask_h % height == 0 and mask_w % width == 0:
            step_h, step_w = mask_h // height, mask_w // width
            if masks.dtype == torch.bool:
                # Exact integer sums. Accumulating row by row (a loop over the resize factor, not
                # over prompts) avoids the full-size int copy that ``sum(dtype=...)`` makes.
                rows = masks.view(torch.uint8).reshape(num, height, step_h, mask_w)
                acc = rows[:, :, 0].to(torch.int32)
                for i in range(1, step_h):
                    acc += rows[:, :, i]
                weights = acc.float().view(num, height, width, step_w).sum(-1)
            else:
                rows = masks.float().reshape(num, height, step_h, mask_w).sum(2)
                weights = rows.view(num, height, width, step_w).sum(-1)
        else:
            weights = F.interpolate(masks[:, None].float(), size=size, mode='area')[:, 0]
        weights = weights.flatten(1)
        total = weights.sum(-1, keepdim=True)
        return weights / total.clamp(min=torch.finfo(torch.float32).tiny)

    def position_code(self, channels: int, like: Tensor) -> Tensor:
        """(k * k, C) slot code in ``like``'s dtype and device, computed once per combination
        (:func:`grid_position_code` on the host, one non-blocking copy)."""
        key = (channels, like.device, like.dtype)
        if key not in self._codes:
            code = grid_position_code(self.k, channels, self.temperature)
            self._codes[key] = host_to_device(code, like.device).to(like.dtype)
        return self._codes[key]

    def forward(
        self, feats: Tensor, masks: Tensor, batch_idx: Tensor, slots: GroupSlots | None = None
    ) -> Tensor:
        """Aggregate the features under each prompt mask into ``k * k`` tokens.

        Args:
            feats (Tensor): (B, C, H, W) float, image features (e.g. the CLIP 24 x 24 grid); C must
                be a multiple of 4.
            masks (Tensor): (P, Hm, Wm) bool or non-negative float, one rasterised mask per prompt,
                covering the same square frame as ``feats`` (any resolution).
            batch_idx (Tensor): (P,) long, image of each prompt, in ``[0, B)``.
            slots (GroupSlots, optional): The layout of the prompts per image
                (``group_slots(batch_idx)``) when known in advance, e.g. planned on the host:
                then nothing is read back from the device. Its ``keys`` are the images with
                prompts, already checked to lie in ``[0, B)``.

        Returns:
            Tensor: (P, k * k, C), ``feats``' dtype and device; token ``n = row * k + col``.
        """
        self._check_inputs(feats, masks, batch_idx)
        batch, channels, height, width = feats.shape
        num_tokens = self.num_tokens
        pos_code = self.position_code(channels, feats)
        weights = self.normalised_masks(masks.to(feats.device), (height, width))  # (P, HW)
        blocks = block_one_hot(height, width, self.k, feats.device)  # (n, HW)
        per_block = (weights[:, None, :] * blocks).to(feats.dtype)  # (P, n, HW)
        # Pad the prompts per image (only images that have prompts), so that one batched matmul
        # serves all of them without copying the features once per prompt:
        # (G, P_max * n, HW) @ (G, HW, C), G = number of distinct images in batch_idx.
        if slots is None:
            slots = group_slots(batch_idx.to(feats.device))
            images = slots.keys
            if images.numel() and (int(images[0]) < 0 or int(images[-1]) >= batch):
                raise ValueError(
                    f'batch_idx must be in [0, {batch}), got values in '
                    f'[{int(images[0])}, {int(images[-1])}]'
                )
        images = slots.keys
        if images.numel() < batch:
            feats = feats.index_select(0, images)
        padded = scatter_to_slots(per_block, slots)  # (G, Pm, n, HW)
        tokens = padded.flatten(1, 2) @ feats.flatten(2).transpose(1, 2)  # (G, Pm*n, C)
        tokens = (
            tokens.flatten(0, 1).view(-1, num_tokens, channels).index_select(0, slots.slot_inds)
        )
        return tokens + self.alpha * pos_code
