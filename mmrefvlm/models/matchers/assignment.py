# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""Grouped Hungarian assignment (REF-VLM App. C.1): permute targets only inside their triplet group.

Typical use in a decoder's ``loss`` (``pred_boxes``/``gt_boxes`` are the M real ``<REF>`` queries of
the batch and their targets, both in ``<REF>`` order)::

    keys = flat_group_keys(queries.group_ids, queries.mask)              # (M,)
    pred_inds, tgt_inds = match_in_groups(box_group_costs, pred_boxes, gt_boxes, keys)
    loss_l1 = (pred_boxes[pred_inds] - gt_boxes[tgt_inds]).abs().sum(-1).mean()
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from torch import Tensor

from .group_costs import GroupedCosts


def _solve_groups(costs: np.ndarray, sizes: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """Row and column indices of every group, concatenated in group order (host side)."""
    rows, cols = [], []
    for g, n in enumerate(sizes):
        if n == 0:
            continue
        if n == 1:  # the only permutation: no solver call
            rows.append(np.zeros(1, dtype=np.int64))
            cols.append(np.zeros(1, dtype=np.int64))
            continue
        block = costs[g, :n, :n]
        if not np.isfinite(block).all():
            raise ValueError(
                f'grouped_assignment: group {g} (size {n}) has non-finite costs {block.tolist()}'
            )
        r, c = linear_sum_assignment(block)
        rows.append(r.astype(np.int64))
        cols.append(c.astype(np.int64))
    if not rows:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    return np.concatenate(rows), np.concatenate(cols)


def _check_costs(costs: Tensor, sizes: Tensor) -> list[int]:
    if costs.dim() != 3 or costs.shape[1] != costs.shape[2]:
        raise ValueError(f'costs must be (G, N, N), got {tuple(costs.shape)}')
    if sizes.shape != (costs.shape[0],):
        raise ValueError(f'sizes must be ({costs.shape[0]},), got {tuple(sizes.shape)}')
    size_list = [int(n) for n in sizes.tolist()]
    bad = [n for n in size_list if n < 0 or n > costs.shape[1]]
    if bad:
        raise ValueError(f'sizes must be in [0, {costs.shape[1]}], got {bad}')
    return size_list


def grouped_assignment(costs: Tensor, sizes: Tensor) -> list[tuple[Tensor, Tensor]]:
    """Minimum-cost one-to-one assignment inside each group.

    The costs are moved to the host once for all groups; each group's valid ``n x n`` block is
    solved with ``scipy.optimize.linear_sum_assignment``; groups of size 1 skip the solver and
    groups of size 0 give empty indices. Entries outside the valid blocks are never read, so they
    may hold anything (padding, NaN).

    Args:
        costs (Tensor): (G, N, N) float, padded cost matrices; ``costs[g, i, j]`` = cost of
            prediction ``i`` against target ``j`` of group ``g``.
        sizes (Tensor): (G,) integer, valid rows/columns of each group (``0 <= sizes[g] <= N``).

    Returns:
        list[tuple[Tensor, Tensor]]: G pairs ``(row_inds, col_inds)``, each (sizes[g],) long on
        ``costs.device``; ``row_inds`` is ``arange(sizes[g])`` and ``col_inds`` a permutation.

    Raises:
        ValueError: On bad shapes or sizes, or non-finite costs inside a valid block.

    Example:
        >>> costs = torch.tensor([[[0., 9.], [9., 9.]], [[5., 1.], [1., 5.]]])
        >>> grouped_assignment(costs, torch.tensor([1, 2]))
        [(tensor([0]), tensor([0])), (tensor([0, 1]), tensor([1, 0]))]
    """
    size_list = _check_costs(costs, sizes)
    host = costs.detach().to('cpu', torch.float64).numpy()  # one transfer for all groups
    rows, cols = _solve_groups(host, size_list)
    both = torch.from_numpy(np.stack([rows, cols])).to(costs.device)  # one transfer back
    return list(zip(both[0].split(size_list), both[1].split(size_list), strict=True))


def assign_in_groups(costs: Tensor, sizes: Tensor, slot_inds: Tensor) -> tuple[Tensor, Tensor]:
    """Grouped assignment mapped back to batch-flattened item indices.

    Args:
        costs (Tensor): (G, N, N) float, padded per-group costs (:class:`GroupedCosts`).
        sizes (Tensor): (G,) long, items per group.
        slot_inds (Tensor): (M,) long, flat slot ``g * N + a`` of each item (:func:`group_slots`).

    Returns:
        tuple[Tensor, Tensor]: ``pred_inds`` (M,) long, equal to ``arange(M)``, and ``tgt_inds``
        (M,) long, a permutation that only moves items within their group, on ``costs.device``:
        prediction ``pred_inds[i]`` is supervised by target ``tgt_inds[i]``.
    """
    size_list = _check_costs(costs, sizes)
    num_items, num_slots = slot_inds.shape[0], costs.shape[1]
    if sum(size_list) != num_items:
        raise ValueError(f'sizes sum to {sum(size_list)} but there are {num_items} items')
    rows, cols = _solve_groups(costs.detach().to('cpu', torch.float64).numpy(), size_list)
    group_of = np.repeat(np.arange(len(size_list), dtype=np.int64), size_list)
    flat = torch.from_numpy(np.stack([group_of * num_slots + rows, group_of * num_slots + cols]))
    flat = flat.to(costs.device)
    # Slot -> item lookup (inverse of slot_inds), then sort the pairs by prediction index.
    item_at = torch.full((costs.shape[0] * num_slots,), -1, dtype=torch.long, device=costs.device)
    item_at[slot_inds.to(costs.device)] = torch.arange(num_items, device=costs.device)
    pred_items, tgt_items = item_at[flat[0]], item_at[flat[1]]
    tgt_inds = torch.empty_like(tgt_items)
    tgt_inds[pred_items] = tgt_items
    return torch.arange(num_items, device=costs.device), tgt_inds


def match_in_groups(
    cost_fn: Callable[..., GroupedCosts],
    preds: Tensor,
    targets: Tensor,
    group_key: Tensor,
    **cost_kwargs: Any,
) -> tuple[Tensor, Tensor]:
    """Build the group costs with ``cost_fn`` and assign inside every group.

    Args:
        cost_fn (Callable): A group cost builder such as :func:`box_group_costs`,
            :func:`mask_group_costs` or :func:`point_group_costs`, called as
            ``cost_fn(preds, targets, group_key, **cost_kwargs)``.
        preds (Tensor): (M, ...) predictions of the real ``<REF>`` queries, batch-flattened.
        targets (Tensor): (M, ...) their targets, in the same (``<REF>``) order.
        group_key (Tensor): (M,) long, batch-unique group key of each item, e.g. from
            :func:`flat_group_keys` (``sample_idx * stride + group_id``).
        **cost_kwargs: Forwarded to ``cost_fn`` (weights, ``valid``, ``tgt_visible``...).

    Returns:
        tuple[Tensor, Tensor]: ``(pred_inds, tgt_inds)``, (M,) long each, such that
        ``preds[pred_inds]`` is matched with ``targets[tgt_inds]`` (see :func:`assign_in_groups`).

    Example:
        >>> pred = torch.tensor([[.2, .2, .1, .1], [.8, .8, .1, .1], [.5, .5, .2, .2]])
        >>> gt = torch.tensor([[.8, .8, .1, .1], [.2, .2, .1, .1], [.5, .5, .2, .2]])
        >>> match_in_groups(box_group_costs, pred, gt, torch.tensor([0, 0, 1]))
        (tensor([0, 1, 2]), tensor([1, 0, 2]))
    """
    grouped = cost_fn(preds, targets, group_key, **cost_kwargs)
    return assign_in_groups(grouped.costs, grouped.sizes, grouped.slot_inds)
