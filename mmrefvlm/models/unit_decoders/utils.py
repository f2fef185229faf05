# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""Target gathering and frame conversions shared by the unit decoders' ``loss`` / ``predict``."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from mmrefvlm.structures import RefVLMDataSample, SampleList, UnitQueries

__all__ = [
    'gather_unit_targets',
    'real_slots',
    'real_rows',
    'xyxy_to_cxcywh',
    'sample_frame',
    'square_to_original',
    'per_sample',
    'resize_maps',
]


def xyxy_to_cxcywh(boxes: Tensor) -> Tensor:
    """(..., 4) ``(x1, y1, x2, y2)`` -> (..., 4) ``(cx, cy, w, h)``."""
    return torch.cat([(boxes[..., :2] + boxes[..., 2:]) / 2, boxes[..., 2:] - boxes[..., :2]], -1)


def _unit_targets(sample: RefVLMDataSample, unit: str):
    if 'gt_units' not in sample:
        return None
    return sample.gt_units.get(unit)


def gather_unit_targets(
    batch_data_samples: SampleList, unit: str, fields: Sequence[str], queries: UnitQueries
) -> dict[str, Tensor]:
    """Concatenate ``gt_units.<unit>.<field>`` over the batch, aligned with the real queries.

    Args:
        batch_data_samples (list[RefVLMDataSample]): B samples; sample ``b`` must have as many
            ``gt_units.<unit>`` entries as real queries in row ``b`` of ``queries.mask``.
        unit (str): Unit name.
        fields (Sequence[str]): Field names to gather.
        queries (UnitQueries): The routed queries (gives B, the counts and the device).

    Returns:
        dict[str, Tensor]: field -> (M, ...) tensor on ``queries.embeds.device``, in
        ``queries.mask.nonzero()`` order (sample-major, ``<REF>`` order).

    Raises:
        ValueError: On a batch-size or count mismatch, a missing field, or M == 0.
    """
    if queries.layout is not None:  # known on the host: no device read
        counts = list(queries.layout.counts)
    else:
        counts = queries.mask.sum(1).tolist()
    if len(batch_data_samples) != len(counts):
        raise ValueError(
            f'{len(batch_data_samples)} data samples for a batch of {len(counts)} query rows'
        )
    pieces: dict[str, list[Tensor]] = {f: [] for f in fields}
    for b, (sample, num) in enumerate(zip(batch_data_samples, counts, strict=True)):
        gt = _unit_targets(sample, unit)
        have = 0 if gt is None else len(gt)
        if have != num:
            raise ValueError(
                f'sample {b} ({sample.metainfo.get("record_id")}): {num} {unit!r} '
                f'queries but {have} gt_units.{unit} targets'
            )
        if num == 0:
            continue
        for f in fields:
            if f not in gt:
                raise ValueError(
                    f'gt_units.{unit} of sample {b} has no field {f!r} (fields: {list(gt.keys())})'
                )
            pieces[f].append(torch.as_tensor(gt.get(f)))
    if sum(counts) == 0:
        raise ValueError(f'no {unit!r} query in the batch: nothing to gather')
    dev = queries.embeds.device
    out = {}
    for f, parts in pieces.items():
        shapes = {tuple(p.shape[1:]) for p in parts}
        if len(shapes) > 1:
            raise ValueError(
                f'gt_units.{unit}.{f} has different shapes across the batch: {sorted(shapes)}'
            )
        out[f] = torch.cat(parts).to(dev)
    return out


def real_slots(x: Tensor, queries: UnitQueries) -> Tensor:
    """The entries of the real queries: ``x[queries.mask]`` in ``mask.nonzero()`` order.

    With a host layout (``queries.layout``) this is an index gather that needs no device->host
    synchronisation; otherwise boolean indexing (which does).

    Args:
        x (Tensor): (B, Q, ...) per-slot values.
        queries (UnitQueries): The routed queries.

    Returns:
        Tensor: (M, ...).
    """
    if queries.layout is None:
        return x[queries.mask.bool()]
    return x.flatten(0, 1).index_select(0, queries.layout.index)


def real_rows(x: Tensor, queries: UnitQueries) -> Tensor:
    """Per-row values repeated for each real query: (B, ...) -> (M, ...) (e.g. ``valid_hw``)."""
    if queries.layout is None:
        mask = queries.mask.bool()
        return x[:, None].expand(-1, mask.shape[1], *x.shape[1:])[mask]
    return x.index_select(0, queries.layout.rows)


def sample_frame(sample: RefVLMDataSample) -> tuple[int, int, int]:
    """``(H, W, S)``: original image size and side of the square frame (S = max(H, W) default).

    Raises:
        ValueError: If ``ori_shape`` is missing.
    """
    shape = sample.metainfo.get('ori_shape')
    if shape is None:
        raise ValueError('predict(rescale=True) needs metainfo ori_shape (and square_size)')
    height, width = int(shape[0]), int(shape[1])
    side = int(sample.metainfo.get('square_size') or max(height, width))
    return height, width, side


def resize_maps(maps: Tensor, size: tuple[int, int] | int) -> Tensor:
    """Bilinear resize of (N, H, W) maps (no-op when the size already matches)."""
    hw = (size, size) if isinstance(size, int) else tuple(size)
    if tuple(maps.shape[-2:]) == hw:
        return maps
    if maps.shape[0] == 0:
        return maps.new_zeros(0, *hw)
    return F.interpolate(maps[:, None], size=hw, mode='bilinear', align_corners=False)[:, 0]


def square_to_original(maps: Tensor, sample: RefVLMDataSample) -> Tensor:
    """Square-frame maps -> original pixels: resize to S x S, crop the top-left H x W.

    Args:
        maps (Tensor): (N, R, R) float maps covering the square frame (logits, log-depth...).
        sample (RefVLMDataSample): Gives ``ori_shape`` and ``square_size``.

    Returns:
        Tensor: (N, H, W) float.
    """
    height, width, side = sample_frame(sample)
    return resize_maps(maps.float(), side)[:, :height, :width]


def per_sample(x: Tensor, mask: Tensor) -> list[Tensor]:
    """Real-slot entries of each sample: ``[x[b][mask[b]] for b in range(B)]`` ((n_b, ...) each)."""
    return list(x[mask].split(mask.sum(1).tolist()))
