# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""Grouped matching of several decoders with one device->host transfer per step.

A decoder's loss in two phases (``BaseVisualUnitDecoder.loss_costs`` / ``loss_matched``):

1. on the device, the cost matrices of its **non-trivial** phrase groups (two or more queries),
   laid out by a :class:`MatchLayout` that the host planned in advance (no synchronisation);
2. on the host, :func:`solve_assignments` moves the costs of *every* decoder to the host in one
   transfer, solves each group with ``scipy.optimize.linear_sum_assignment`` and sends the target
   permutations back in one non-blocking copy; then each decoder computes its losses.

A group of one query never reaches the solver (its assignment is the identity), and a step whose
groups are all trivial does not synchronise at all.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

from mmrefvlm.structures import MatchLayout, QueryLayout, UnitQueries

from ..host_index import IndexPack, host_to_device
from .assignment import _solve_groups
from .group_layout import GroupSlots

__all__ = [
    'MatchRequest',
    'plan_match_layout',
    'match_slots',
    'query_layout',
    'select_items',
    'solve_assignments',
]


@dataclass
class MatchRequest:
    """Phase-1 result of a decoder's loss (see the module docstring).

    Attributes:
        layout (MatchLayout, optional): The matching layout (None: the decoder has no real query).
        costs (Tensor, optional): (G, N, N) float costs of the non-trivial groups on the device,
            laid out by ``layout`` (None: every group is trivial).
        state (dict): Whatever the decoder needs in phase 2 (predictions, targets...).
    """

    layout: MatchLayout | None
    costs: Tensor | None = None
    state: dict[str, Any] = field(default_factory=dict)


def _host_match(group_keys: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """``(items, slot_inds, sizes, num_slots)`` of the groups of 2+ items (host, numpy)."""
    keys = np.asarray(group_keys, dtype=np.int64).reshape(-1)
    _, inverse, counts = np.unique(keys, return_inverse=True, return_counts=True)
    solved = counts >= 2
    items = np.flatnonzero(solved[inverse.reshape(-1)])
    group = (np.cumsum(solved) - 1)[inverse.reshape(-1)[items]]
    order = np.argsort(group, kind='stable')
    items, group = items[order], group[order]
    sizes = counts[solved].astype(np.int64)
    num_slots = int(sizes.max()) if sizes.size else 0
    starts = np.cumsum(sizes) - sizes
    rank = np.arange(items.size, dtype=np.int64) - starts[group]
    return items.astype(np.int64), group * num_slots + rank, sizes, num_slots


def plan_match_layout(group_keys: np.ndarray, pack: IndexPack):
    """Plan the matching of items with host-known group keys; the index arrays go in ``pack``.

    Args:
        group_keys (np.ndarray): (M,) int64, batch-unique group key of each item.
        pack (IndexPack): Collects the arrays for the step's single host->device copy.

    Returns:
        Callable[[list[Tensor]], MatchLayout]: Builds the layout from the pack's device tensors.
    """
    items, slot_inds, sizes, num_slots = _host_match(group_keys)
    handles = (pack.add(items), pack.add(slot_inds), pack.add(sizes))
    num_items = int(np.asarray(group_keys).size)

    def build(dev: list[Tensor]) -> MatchLayout:
        return MatchLayout(
            num_items=num_items,
            sizes=tuple(int(n) for n in sizes),
            num_slots=num_slots,
            host_items=items,
            items=dev[handles[0]],
            slot_inds=dev[handles[1]],
            group_sizes=dev[handles[2]],
        )

    return build


def match_slots(layout: MatchLayout) -> GroupSlots:
    """The :class:`GroupSlots` of the non-trivial groups, for the group cost builders."""
    keys = torch.arange(len(layout.sizes), device=layout.group_sizes.device)
    return GroupSlots(layout.group_sizes, layout.slot_inds, layout.num_slots, keys)


def select_items(layout: MatchLayout, *tensors: Tensor | None) -> list:
    """The items of the non-trivial groups of each (M, ...) tensor (None stays None), laid out
    for :func:`match_slots`."""
    return [None if t is None else t.index_select(0, layout.items) for t in tensors]


def query_layout(queries: UnitQueries) -> QueryLayout:
    """``queries.layout`` with its matching layout; built from the device tensors when the
    queries carry none (a decoder called on its own: this synchronises)."""
    layout = queries.layout
    device = queries.embeds.device
    if layout is None:
        mask = queries.mask.bool()
        counts = tuple(int(n) for n in mask.sum(1).tolist())
        flat = mask.flatten().nonzero(as_tuple=True)[0]
        gids = queries.group_ids.long()
        stride = int(gids.max().clamp(min=0)) + 1 if gids.numel() else 1
        rows = torch.div(flat, mask.shape[1], rounding_mode='floor')
        keys = (rows * stride + gids.flatten()[flat]).cpu().numpy().astype(np.int64)
        layout = QueryLayout(counts, keys, flat, rows)
    if layout.match is None:
        pack = IndexPack()
        build = plan_match_layout(layout.group_keys, pack)
        layout = QueryLayout(
            layout.counts, layout.group_keys, layout.index, layout.rows, build(pack.to(device))
        )
    return layout


def _solve(costs: np.ndarray, layout: MatchLayout) -> np.ndarray:
    """Target item of every item (identity outside the solved groups)."""
    tgt = np.arange(layout.num_items, dtype=np.int64)
    sizes = list(layout.sizes)
    if not sizes:
        return tgt
    blocks = costs.reshape(len(sizes), layout.num_slots, layout.num_slots)
    rows, cols = _solve_groups(blocks, sizes)  # concatenated per group, in group order
    starts = np.repeat(np.cumsum([0, *sizes[:-1]]), sizes)
    items = layout.host_items
    tgt[items[starts + rows]] = items[starts + cols]
    return tgt


def solve_assignments(requests: Sequence[MatchRequest]) -> list[Tensor | None]:
    """Solve the grouped assignments of several decoders with one device->host transfer.

    Args:
        requests (Sequence[MatchRequest]): Phase-1 results, any number of decoders.

    Returns:
        list[Tensor | None]: Per request, ``tgt_inds`` (M,) long on the device (prediction ``i``
        is supervised by target ``tgt_inds[i]``; only items of one group are permuted), or None
        when no group of the request needs the solver (the assignment is the identity).
    """
    solved = [r for r in requests if r.costs is not None and r.layout is not None]
    if not solved:
        return [None] * len(requests)
    flat = torch.cat([r.costs.detach().float().flatten() for r in solved])  # type: ignore[union-attr]
    host = flat.to('cpu').numpy().astype(np.float64)  # the one device->host transfer
    targets, start = {}, 0
    for r in solved:
        assert r.layout is not None and r.costs is not None
        size = r.costs.numel()
        targets[id(r)] = _solve(host[start : start + size], r.layout)
        start += size
    sizes = [targets[id(r)].size for r in solved]
    device = solved[0].costs.device  # type: ignore[union-attr]
    back = host_to_device(torch.from_numpy(np.concatenate(list(targets.values()))), device)
    per = dict(zip(targets, back.split(sizes), strict=True))
    return [per.get(id(r)) for r in requests]
