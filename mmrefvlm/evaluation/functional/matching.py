# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""One-to-one pairing of predictions with ground truth from a score (IoU) matrix."""

from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment

MATCHERS = ('hungarian', 'greedy')


def match_one_to_one(
    iou: np.ndarray, thr: float = 0.5, method: str = 'hungarian'
) -> list[tuple[int, int]]:
    """Pair predictions (rows) with targets (columns) one-to-one, keeping pairs with IoU >= thr.

    * ``'hungarian'``: maximise first the number of pairs with IoU >= ``thr`` and then, among
      those assignments, the sum of their IoU (weights ``K + iou`` on eligible pairs, ``K`` larger
      than any IoU sum, 0 elsewhere).
    * ``'greedy'``: repeatedly take the highest remaining IoU >= ``thr`` (ties broken by row, then
      column index), as in COCO-style matching.

    Args:
        iou (np.ndarray): (P, G) float IoU of prediction p with target g.
        thr (float): Minimum IoU of a kept pair. Defaults to 0.5.
        method (str): ``'hungarian'`` or ``'greedy'``. Defaults to ``'hungarian'``.

    Returns:
        list[tuple[int, int]]: (pred_index, gt_index) pairs sorted by gt_index.

    Raises:
        ValueError: If ``method`` is unknown.
    """
    if method not in MATCHERS:
        raise ValueError(f'unknown matcher {method!r}; choose from {MATCHERS}')
    iou = np.asarray(iou, dtype=np.float64)
    if iou.size == 0:
        return []
    eligible = iou >= thr
    if method == 'hungarian':
        big = float(min(iou.shape) + 1)
        weight = np.where(eligible, big + iou, 0.0)
        rows, cols = linear_sum_assignment(weight, maximize=True)
        pairs = [(int(r), int(c)) for r, c in zip(rows, cols, strict=True) if eligible[r, c]]
    else:
        pairs = []
        used_r, used_c = set(), set()
        order = np.lexsort(
            (np.arange(iou.size) % iou.shape[1], np.arange(iou.size) // iou.shape[1], -iou.ravel())
        )
        for flat in order:
            r, c = divmod(int(flat), iou.shape[1])
            if not eligible[r, c]:
                break  # sorted descending: nothing further is eligible
            if r in used_r or c in used_c:
                continue
            pairs.append((r, c))
            used_r.add(r)
            used_c.add(c)
    return sorted(pairs, key=lambda p: p[1])


def greedy_paired_ious(iou: np.ndarray) -> list[float]:
    """GLaMM's mIoU pairing: take the largest IoU, remove its row and column, repeat while the
    largest remaining IoU is > 0.

    Args:
        iou (np.ndarray): (P, G) float IoU matrix.

    Returns:
        list[float]: IoU of each pair, in the order taken.
    """
    m = np.array(iou, dtype=np.float64, copy=True)
    out: list[float] = []
    while m.size and m.max() > 0:
        r, c = np.unravel_index(int(np.argmax(m)), m.shape)
        out.append(float(m[r, c]))
        m = np.delete(np.delete(m, r, axis=0), c, axis=1)
    return out
