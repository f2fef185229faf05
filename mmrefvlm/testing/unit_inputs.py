# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""Synthetic decoder inputs: routed queries, visual features and data samples with ``gt_units``.

Everything is generated from a seed (``torch.Generator``), so two calls with the same arguments give
identical tensors. Targets follow the ``RefVLMDataSample.gt_units`` schema (square frame, image at
the top-left, normalised coordinates) and stay inside the image part of the frame.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import cast

import torch
import torch.nn.functional as F
from mmengine.structures import BaseDataElement, InstanceData
from torch import Tensor

from mmrefvlm.structures import RefVLMDataSample, UnitQueries, VisualContext

__all__ = [
    'SyntheticFrame',
    'SyntheticTargets',
    'CORE_SYNTHETIC_TARGETS',
    'DEMO_IN_CHANNELS',
    'DEMO_PYRAMID_CHANNELS',
    'DEMO_CLIP_CHANNELS',
    'demo_unit_inputs',
    'tiny_decoder_cfg',
    'pad_unit_inputs',
    'swap_targets',
]

DEMO_IN_CHANNELS = 32
DEMO_PYRAMID_CHANNELS = (8, 16, 24, 32)  # finest first; sides 16, 8, 4, 2
DEMO_CLIP_CHANNELS = 24  # 4 x 4 grid
DEMO_ORI_SHAPES = ((24, 32), (32, 20), (30, 30))

_TINY_TRANSFORMER = dict(d_model=32, num_layers=1, num_heads=4, ffn_dim=64, dropout=0.1)
_TINY_PIXEL = dict(pixel_levels=(0, 1, 2), pixel_use_clip=True, fpn_dim=16)
_TINY_COMMON = dict(
    in_channels=DEMO_IN_CHANNELS,
    num_queries=4,
    pyramid_channels=DEMO_PYRAMID_CHANNELS,
    clip_channels=DEMO_CLIP_CHANNELS,
)
_TINY_MEMORY = dict(memory_levels=(0, 1, 2), memory_use_clip=True, memory_size=8)
_TINY_CFGS = dict(
    box=dict(type='BoxUnitDecoder', **_TINY_MEMORY, **_TINY_TRANSFORMER),
    mask=dict(
        type='MaskUnitDecoder', **_TINY_PIXEL, mask_dim=16, **_TINY_TRANSFORMER, match_size=16
    ),
    keypoint=dict(
        type='KeypointUnitDecoder',
        num_keypoints=5,
        sigmas=0.05,
        num_point_layers=1,
        **_TINY_MEMORY,
        **_TINY_TRANSFORMER,
    ),
    depth=dict(type='DepthUnitDecoder', d_model=32, **_TINY_PIXEL, pixel_dim=16, match_size=16),
)


def tiny_decoder_cfg(unit: str) -> dict:
    """A fresh tiny config (CPU tests) of a core decoder matching :func:`demo_unit_inputs`."""
    if unit not in _TINY_CFGS:
        raise ValueError(f'no tiny config for unit {unit!r}; known: {sorted(_TINY_CFGS)}')
    return copy.deepcopy({**_TINY_CFGS[unit], **_TINY_COMMON})


def _uniform(gen: torch.Generator, *shape: int, low: float = 0.0, high: float = 1.0) -> Tensor:
    return low + (high - low) * torch.rand(*shape, generator=gen)


def _boxes(gen: torch.Generator, num: int, vh: float, vw: float) -> Tensor:
    """(num, 4) normalised xyxy boxes inside the image part ``[0, vw] x [0, vh]``."""
    wh = _uniform(gen, num, 2, low=0.2, high=0.45) * torch.tensor([vw, vh])
    xy = _uniform(gen, num, 2) * (torch.tensor([vw, vh]) - wh)
    return torch.cat([xy, xy + wh], dim=1)


@dataclass(frozen=True)
class SyntheticFrame:
    """What a synthetic-target function gets for one sample (see :func:`demo_unit_inputs`).

    Attributes:
        gen (torch.Generator): The seeded generator: draw every random value from it.
        num (int): N, the sample's number of real queries (targets to make).
        vh (float): Fraction of the square frame's height covered by the image (top-left).
        vw (float): The same for the width.
        boxes (Tensor): (N, 4) float normalised xyxy random boxes inside the image part, drawn
            first for every unit (objects to derive other geometry from).
        mask_size (int): Side of dense targets (masks).
        depth_size (int): Side of depth targets.
        num_keypoints (int): K of keypoint targets.
    """

    gen: torch.Generator
    num: int
    vh: float
    vw: float
    boxes: Tensor
    mask_size: int
    depth_size: int
    num_keypoints: int

    def uniform(self, *shape: int, low: float = 0.0, high: float = 1.0) -> Tensor:
        """Uniform random values in [low, high) from :attr:`gen`."""
        return _uniform(self.gen, *shape, low=low, high=high)


#: ``fn(frame: SyntheticFrame) -> dict[str, Tensor]`` (the fields of ``gt_units.<unit>``, each
#: (N, ...), in the square frame).
SyntheticTargets = Callable[[SyntheticFrame], dict[str, Tensor]]


def box_targets(frame: SyntheticFrame) -> dict[str, Tensor]:
    """``bboxes`` (N, 4) normalised xyxy."""
    return dict(bboxes=frame.boxes)


def mask_targets(frame: SyntheticFrame) -> dict[str, Tensor]:
    """``masks`` (N, S, S) bool: the boxes rasterised on a ``mask_size`` grid."""
    boxes, size = frame.boxes, frame.mask_size
    centres = (torch.arange(size) + 0.5) / size
    inx = (centres[None] >= boxes[:, 0:1]) & (centres[None] < boxes[:, 2:3])
    iny = (centres[None] >= boxes[:, 1:2]) & (centres[None] < boxes[:, 3:4])
    return dict(masks=iny[:, :, None] & inx[:, None, :])


def keypoint_targets(frame: SyntheticFrame) -> dict[str, Tensor]:
    """``keypoints`` (N, K, 3) (x, y inside the box, visibility 0/1/2, keypoint 0 labelled) and
    ``bboxes``."""
    boxes, num, k = frame.boxes, frame.num, frame.num_keypoints
    frac = frame.uniform(num, k, 2)
    xy = boxes[:, None, :2] + frac * (boxes[:, None, 2:] - boxes[:, None, :2])
    vis = torch.randint(0, 3, (num, k), generator=frame.gen).float()
    vis[:, 0] = 2.0  # at least one labelled keypoint
    xy = xy * (vis > 0)[..., None]  # v = 0: coordinates are 0
    return dict(keypoints=torch.cat([xy, vis[..., None]], -1), bboxes=boxes)


def depth_targets(frame: SyntheticFrame) -> dict[str, Tensor]:
    """``depth`` (N, D, D) float metres (0 outside the image) and ``valid`` (N, D, D) bool."""
    num, size = frame.num, frame.depth_size
    coarse = frame.uniform(num, 1, 4, 4, low=1.0, high=5.0)
    depth = F.interpolate(coarse, size=(size, size), mode='bilinear', align_corners=False)[:, 0]
    centres = (torch.arange(size) + 0.5) / size
    inside = (centres[:, None] < frame.vh) & (centres[None, :] < frame.vw)
    valid = inside[None] & (frame.uniform(num, size, size) > 0.1)
    return dict(depth=depth * inside, valid=valid)


#: The core units' synthetic targets, declared the way a plugin declares its own.
CORE_SYNTHETIC_TARGETS: dict[str, SyntheticTargets] = dict(
    box=box_targets, mask=mask_targets, keypoint=keypoint_targets, depth=depth_targets
)


def _unit_targets(
    unit: str,
    targets: SyntheticTargets | None,
    gen: torch.Generator,
    num: int,
    vh: float,
    vw: float,
    **sizes: int,
) -> dict[str, Tensor]:
    fn = targets if targets is not None else CORE_SYNTHETIC_TARGETS.get(unit)
    if fn is None:
        raise ValueError(
            f'demo_unit_inputs has no targets for unit {unit!r}: pass targets=fn (a plugin '
            f'contract declares `synthetic_targets`); core units: {sorted(CORE_SYNTHETIC_TARGETS)}'
        )
    frame = SyntheticFrame(gen, num, vh, vw, _boxes(gen, num, vh, vw), **sizes)
    return fn(frame)


def _demo_sample(
    unit: str,
    targets: SyntheticTargets | None,
    gen: torch.Generator,
    idx: int,
    shape: tuple[int, int],
    gids: Tensor,
    **sizes: int,
) -> tuple[RefVLMDataSample, tuple[float, float]]:
    """One data sample with ``gt_units.<unit>`` and its image fraction of the square frame."""
    height, width = shape
    side = max(height, width)
    vh, vw = height / side, width / side
    fields = _unit_targets(unit, targets, gen, gids.numel(), vh, vw, **sizes)
    gt = InstanceData(**fields, group_ids=gids.clone(), instance_ids=torch.arange(gids.numel()))
    sample = RefVLMDataSample(
        metainfo=dict(
            ori_shape=(height, width), square_size=side, sample_idx=idx, record_id=f'demo_{idx}'
        )
    )
    sample.gt_units = BaseDataElement(**{unit: gt})
    return sample, (vh, vw)


def demo_unit_inputs(
    unit: str = 'box',
    *,
    num_queries: Sequence[int] = (3, 1),
    num_slots: int | None = None,
    group_ids: Sequence[Sequence[int]] | None = None,
    ori_shapes: Sequence[tuple[int, int]] | None = None,
    in_channels: int = DEMO_IN_CHANNELS,
    pyramid_channels: Sequence[int] = DEMO_PYRAMID_CHANNELS,
    pyramid_size: int = 16,
    clip_channels: int = DEMO_CLIP_CHANNELS,
    clip_size: int = 4,
    mask_size: int = 32,
    depth_size: int = 32,
    num_keypoints: int = 5,
    seed: int = 0,
    targets: SyntheticTargets | None = None,
) -> tuple[UnitQueries, VisualContext, list[RefVLMDataSample]]:
    """Build one unit's decoder inputs for a batch of ``len(num_queries)`` samples.

    Args:
        unit (str): The unit name: ``gt_units.<unit>`` gets the targets. A core unit (``'box'``,
            ``'mask'``, ``'keypoint'``, ``'depth'``) has its own; any other needs ``targets``.
        num_queries (Sequence[int]): Real queries of each sample. Defaults to (3, 1).
        num_slots (int, optional): Padded Q; defaults to ``max(num_queries) + 1`` (always one
            padded slot).
        group_ids (Sequence[Sequence[int]], optional): Phrase group of each real query per
            sample; defaults to ``k // 2`` (groups of two: ``[0, 0, 1]`` for three queries).
        ori_shapes (Sequence[tuple[int, int]], optional): (H, W) per sample; defaults cycle
            through (24, 32), (32, 20), (30, 30).
        in_channels (int): Width of the ``<REF>`` states. Defaults to 32.
        pyramid_channels (Sequence[int]): Channels of the pyramid levels (finest first); level
            ``l`` has side ``pyramid_size // 2**l``.
        pyramid_size (int): Side of the finest level. Defaults to 16.
        clip_channels (int): CLIP grid channels. Defaults to 24.
        clip_size (int): CLIP grid side. Defaults to 4.
        mask_size (int): Side of mask targets. Defaults to 32.
        depth_size (int): Side of depth targets. Defaults to 32.
        num_keypoints (int): K of keypoint targets. Defaults to 5.
        seed (int): Seed of every random tensor. Defaults to 0.
        targets (callable, optional): ``fn(frame: SyntheticFrame) -> dict`` making a plugin
            unit's targets (each (N, ...), square frame) for one sample; None: the core unit's
            (:data:`CORE_SYNTHETIC_TARGETS`).

    Returns:
        tuple: ``(UnitQueries, VisualContext, list[RefVLMDataSample])``; padded query slots hold
        zeros and group id -1; each sample has ``gt_units.<unit>`` (with ``group_ids`` and
        ``instance_ids``) and metainfo ``ori_shape``, ``square_size``, ``sample_idx``,
        ``record_id``.
    """
    gen = torch.Generator().manual_seed(seed)
    batch = len(num_queries)
    slots = max(num_queries, default=0) + 1 if num_slots is None else num_slots
    if slots < max(num_queries, default=0):
        raise ValueError(f'num_slots={slots} < the largest num_queries {max(num_queries)}')
    shapes = [
        cast(tuple[int, int], tuple(s))
        for s in (ori_shapes or [DEMO_ORI_SHAPES[b % 3] for b in range(batch)])
    ]
    embeds = torch.zeros(batch, slots, in_channels)
    mask = torch.zeros(batch, slots, dtype=torch.bool)
    groups = torch.full((batch, slots), -1, dtype=torch.long)
    samples, valid_hw = [], []
    for b, num in enumerate(num_queries):
        gids = torch.as_tensor(
            group_ids[b] if group_ids is not None else [k // 2 for k in range(num)],
            dtype=torch.long,
        )
        if gids.numel() != num:
            raise ValueError(f'sample {b}: {num} queries but group_ids {gids.tolist()}')
        embeds[b, :num] = torch.randn(num, in_channels, generator=gen)
        mask[b, :num] = True
        groups[b, :num] = gids
        sample, fraction = _demo_sample(
            unit,
            targets,
            gen,
            b,
            shapes[b],
            gids,
            mask_size=mask_size,
            depth_size=depth_size,
            num_keypoints=num_keypoints,
        )
        samples.append(sample)
        valid_hw.append(fraction)
    pyramid = tuple(
        torch.randn(batch, ch, pyramid_size >> lv, pyramid_size >> lv, generator=gen)
        for lv, ch in enumerate(pyramid_channels)
    )
    clip = torch.randn(batch, clip_channels, clip_size, clip_size, generator=gen)
    visual = VisualContext(pyramid=pyramid, clip=clip, valid_hw=torch.tensor(valid_hw))
    return UnitQueries(embeds=embeds, mask=mask, group_ids=groups), visual, samples


def pad_unit_inputs(
    queries: UnitQueries,
    visual: VisualContext,
    samples: list[RefVLMDataSample],
    *,
    extra_slots: int = 2,
    extra_samples: int = 1,
    seed: int = 1,
) -> tuple[UnitQueries, VisualContext, list[RefVLMDataSample]]:
    """The same batch with more padding: extra (garbage-filled) slots and query-less samples.

    Padded slots get large random embeddings (not zeros) so a decoder that lets them leak into
    real queries is caught. Extra samples have random features, no real query and no targets.

    Returns:
        tuple: ``(UnitQueries, VisualContext, samples)`` with ``B + extra_samples`` rows and
        ``Q + extra_slots`` slots; the original real queries keep their positions.
    """
    gen = torch.Generator().manual_seed(seed)
    batch, slots, dims = queries.embeds.shape
    new_b, new_q = batch + extra_samples, slots + extra_slots
    embeds = 10 * torch.randn(new_b, new_q, dims, generator=gen).to(queries.embeds)
    mask = torch.zeros(new_b, new_q, dtype=torch.bool)
    groups = torch.full((new_b, new_q), -1, dtype=torch.long)
    real = queries.mask.bool()
    embeds[:batch, :slots][real] = queries.embeds[real]
    mask[:batch, :slots] = real
    groups[:batch, :slots] = queries.group_ids

    def extend(x: Tensor) -> Tensor:
        extra = torch.randn(extra_samples, *x.shape[1:], generator=gen).to(x)
        return torch.cat([x, extra])

    valid_hw = torch.cat(
        [visual.valid_hw, torch.tensor([[0.5, 1.0]]).expand(extra_samples, 2).to(visual.valid_hw)]
    )
    new_visual = VisualContext(
        pyramid=tuple(extend(p) for p in visual.pyramid),
        clip=extend(visual.clip),
        valid_hw=valid_hw,
    )
    extra = [
        RefVLMDataSample(
            metainfo=dict(
                ori_shape=(16, 32), square_size=32, sample_idx=batch + i, record_id=f'pad_{i}'
            )
        )
        for i in range(extra_samples)
    ]
    return (
        UnitQueries(embeds=embeds, mask=mask, group_ids=groups),
        new_visual,
        list(samples) + extra,
    )


def swap_targets(
    samples: list[RefVLMDataSample], unit: str, sample_idx: int, i: int, j: int
) -> list[RefVLMDataSample]:
    """Deep copies of ``samples`` with targets ``i`` and ``j`` of one sample swapped.

    Only the target contents move: ``group_ids`` / ``instance_ids`` stay with their positions
    (the group structure belongs to the ``<REF>`` order).
    """
    out = [copy.deepcopy(s) for s in samples]
    gt = out[sample_idx].gt_units.get(unit)
    perm = torch.arange(len(gt))
    perm[i], perm[j] = j, i
    swapped = gt[perm]
    swapped.group_ids, swapped.instance_ids = gt.group_ids, gt.instance_ids
    out[sample_idx].gt_units.set_field(swapped, unit)
    return out
