# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""Pack batch-flattened items into a padded ``(G, N, ...)`` layout, one row per triplet group.

Every ``<REF>`` query of a batch belongs to exactly one phrase group (triplet). The matcher needs
the items of each group side by side so that all group cost matrices come out of one batched op;
this module computes that layout without a Python loop over groups.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import Tensor


class GroupPadding(NamedTuple):
    """Result of :func:`pad_by_group` (unpacks as ``padded, sizes, slot_inds``).

    Attributes:
        padded (Tensor): (G, N, ...) same dtype as the input; row ``g`` holds the items of group
            ``g`` in their input order, then padding (``pad_value``). ``N = sizes.max()``.
        sizes (Tensor): (G,) long, number of items of each group.
        slot_inds (Tensor): (M,) long, flat slot of each item: item ``i`` sits at
            ``padded.flatten(0, 1)[slot_inds[i]]``, i.e. group ``slot_inds[i] // N`` and position
            ``slot_inds[i] % N`` within it.
    """

    padded: Tensor
    sizes: Tensor
    slot_inds: Tensor


class GroupSlots(NamedTuple):
    """Layout of items in a padded ``(G, N, ...)`` tensor (see :func:`group_slots`)."""

    sizes: Tensor  # (G,) long, items per group
    slot_inds: Tensor  # (M,) long, flat slot g * N + rank of each item
    num_slots: int  # N = max size (0 when there is no item)
    keys: Tensor  # (G,) long, group key of each row (arange(G) with num_groups)


def pad_by_group(
    x: Tensor, group_index: Tensor, num_groups: int | None = None, *, pad_value: float = 0.0
) -> GroupPadding:
    """Scatter items into a padded per-group layout (one batched op, no per-group loop).

    Args:
        x (Tensor): (M, ...) any dtype, the items (e.g. boxes (M, 4) or masks (M, H*W)).
        group_index (Tensor): (M,) integer, the group of each item. With ``num_groups=None`` the
            values are arbitrary keys (e.g. ``sample_idx * 1024 + group_id``); groups are ordered by
            ascending key. With ``num_groups`` given, the values must be dense ids in
            ``[0, num_groups)`` and group ``g`` is row ``g`` (empty groups keep their row).
        num_groups (int, optional): Fixed number of groups, see above. Defaults to None.
        pad_value (float): Value of the padded entries. Defaults to 0.

    Returns:
        GroupPadding: ``(padded (G, N, ...), sizes (G,) long, slot_inds (M,) long)``. Items keep
        their relative input order inside a group, so ``<REF>`` order is preserved.

    Example:
        >>> x = torch.tensor([10., 11., 12., 13.])
        >>> padded, sizes, slots = pad_by_group(x, torch.tensor([7, 3, 7, 7]))
        >>> padded  # group key 3 first, then key 7
        tensor([[11.,  0.,  0.],
                [10., 12., 13.]])
        >>> sizes, slots
        (tensor([1, 3]), tensor([3, 0, 4, 5]))
    """
    if group_index.dim() != 1 or group_index.shape[0] != x.shape[0]:
        raise ValueError(
            f'group_index must have shape ({x.shape[0]},), got {tuple(group_index.shape)}'
        )
    slots = group_slots(group_index.to(x.device), num_groups)
    return GroupPadding(
        scatter_to_slots(x, slots, pad_value=pad_value), slots.sizes, slots.slot_inds
    )


def group_slots(group_index: Tensor, num_groups: int | None = None) -> GroupSlots:
    """The layout part of :func:`pad_by_group`: group sizes and each item's flat slot.

    Compute it once and pad several aligned tensors with :func:`scatter_to_slots`.

    Args:
        group_index (Tensor): (M,) integer group keys (or dense ids with ``num_groups``).
        num_groups (int, optional): See :func:`pad_by_group`. Defaults to None.

    Returns:
        GroupSlots: ``sizes`` (G,) long, ``slot_inds`` (M,) long with
        ``slot_inds = group * N + rank_in_group``, ``num_slots`` N = ``sizes.max()`` and
        ``keys`` (G,) long, the key of each group row.
    """
    if group_index.dim() != 1:
        raise ValueError(f'group_index must be 1-D, got shape {tuple(group_index.shape)}')
    if group_index.dtype.is_floating_point or group_index.dtype == torch.bool:
        raise TypeError(f'group_index must be an integer tensor, got {group_index.dtype}')
    group_index = group_index.long()
    if num_groups is None:
        keys, group_ids, sizes = torch.unique(
            group_index, sorted=True, return_inverse=True, return_counts=True
        )
    else:
        if num_groups < 0:
            raise ValueError(f'num_groups must be >= 0, got {num_groups}')
        group_ids = group_index
        keys = torch.arange(num_groups, device=group_index.device)
        sizes = torch.bincount(group_ids, minlength=num_groups)
        if sizes.numel() > num_groups:
            raise ValueError(
                f'group ids must be < num_groups={num_groups}, got {int(group_ids.max())}'
            )
    num_slots = int(sizes.max()) if sizes.numel() else 0
    # Rank of every item inside its group: stable sort by group, minus the group's start offset.
    order = torch.argsort(group_ids, stable=True)
    starts = sizes.cumsum(0) - sizes
    rank = torch.empty_like(group_ids)
    positions = torch.arange(group_ids.numel(), device=group_ids.device)
    rank[order] = positions - starts[group_ids[order]]
    return GroupSlots(sizes, group_ids * num_slots + rank, num_slots, keys)


def scatter_to_slots(x: Tensor, slots: GroupSlots, *, pad_value: float = 0.0) -> Tensor:
    """Place items at their slots of a padded ``(G, N, ...)`` tensor.

    Args:
        x (Tensor): (M, ...) the items.
        slots (GroupSlots): The layout, from :func:`group_slots`.
        pad_value (float): Value of the padded entries. Defaults to 0.

    Returns:
        Tensor: (G, N, ...) with ``N = sizes.max()`` (0 when there is no group).
    """
    if x.shape[0] != slots.slot_inds.shape[0]:
        raise ValueError(f'x has {x.shape[0]} items but the layout has {slots.slot_inds.shape[0]}')
    num_groups, num_slots = slots.sizes.numel(), slots.num_slots
    padded = x.new_full((num_groups * num_slots, *x.shape[1:]), pad_value)
    # index_copy_ rather than ``padded[slot_inds] = x``: same result, several times faster on CPU.
    padded.index_copy_(0, slots.slot_inds.to(x.device), x)
    return padded.view(num_groups, num_slots, *x.shape[1:])


def scatter_rows(parts: Sequence[Tensor], slots: GroupSlots, *, pad_value: float = 0.0) -> Tensor:
    """Scatter T aligned item tensors into one padded (G, T, N, ...) tensor.

    Equivalent to ``torch.stack([scatter_to_slots(p, slots) for p in parts], dim=1)`` without the
    intermediate copies: per group, the T x N rows are contiguous, ready for one batched matmul.

    Args:
        parts (Sequence[Tensor]): T tensors (M, ...) of one shape and dtype.
        slots (GroupSlots): The layout, from :func:`group_slots`.
        pad_value (float): Value of the padded entries. Defaults to 0.

    Returns:
        Tensor: (G, T, N, ...).
    """
    first, num_parts = parts[0], len(parts)
    if first.shape[0] != slots.slot_inds.shape[0]:
        raise ValueError(
            f'parts have {first.shape[0]} items but the layout has {slots.slot_inds.shape[0]}'
        )
    num_groups, num_slots = slots.sizes.numel(), slots.num_slots
    out = first.new_full((num_groups * num_parts * num_slots, *first.shape[1:]), pad_value)
    slot_inds = slots.slot_inds.to(first.device)
    if num_slots:
        group, rank = slot_inds // num_slots, slot_inds % num_slots
        for t, part in enumerate(parts):
            out.index_copy_(0, (group * num_parts + t) * num_slots + rank, part)
    return out.view(num_groups, num_parts, num_slots, *first.shape[1:])


def flat_group_keys(group_ids: Tensor, mask: Tensor) -> Tensor:
    """Batch-unique group keys of the real queries of a padded ``UnitQueries``.

    Args:
        group_ids (Tensor): (B, Q) long, phrase-group index of each query within its sample
            (``UnitQueries.group_ids``), -1 on padding.
        mask (Tensor): (B, Q) bool, True for real queries (``UnitQueries.mask``).

    Returns:
        Tensor: (M,) long with ``M = mask.sum()``, in ``mask.nonzero()`` order (sample-major, query
        order): ``sample_idx * stride + group_id`` with ``stride = group_ids.max() + 1``, so two
        queries share a key iff they share sample and group.
    """
    if group_ids.shape != mask.shape or group_ids.dim() != 2:
        raise ValueError(
            f'group_ids and mask must both be (B, Q), got {tuple(group_ids.shape)} '
            f'and {tuple(mask.shape)}'
        )
    mask = mask.bool()
    stride = group_ids.max().clamp(min=0) + 1 if group_ids.numel() else 1
    sample_idx = torch.arange(group_ids.shape[0], device=group_ids.device)[:, None]
    keys = sample_idx * stride + group_ids.long()
    return keys[mask]
