# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""A config-buildable wrapper around :func:`match_in_groups`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import Tensor

from mmrefvlm.registry import TASK_UTILS

from .assignment import match_in_groups
from .group_costs import GroupedCosts, box_group_costs, mask_group_costs, point_group_costs

_BUILTIN_COSTS: dict[str, Callable[..., GroupedCosts]] = dict(
    box=box_group_costs, mask=mask_group_costs, point=point_group_costs
)


@TASK_UTILS.register_module()
class GroupedHungarianMatcher:
    """Grouped Hungarian matcher for decoders: predictions and targets matched per triplet group.

    Args:
        cost (str | Callable): ``'box'``, ``'mask'`` or ``'point'`` for the built-in builders
            (:func:`box_group_costs`, :func:`mask_group_costs`, :func:`point_group_costs`), or any
            callable with the same signature returning :class:`GroupedCosts` (plugins).
            Defaults to ``'box'``.
        **cost_cfg: Fixed keyword arguments of the builder, e.g. ``l1_weight=5., giou_weight=2.``.

    Example:
        >>> matcher = TASK_UTILS.build(dict(type='GroupedHungarianMatcher', cost='mask',
        ...                                 focal_weight=20., dice_weight=1.))
        >>> pred_inds, tgt_inds = matcher(mask_logits, gt_masks, group_key, valid=valid)
    """

    def __init__(self, cost: str | Callable[..., GroupedCosts] = 'box', **cost_cfg: Any) -> None:
        if isinstance(cost, str):
            if cost not in _BUILTIN_COSTS:
                raise ValueError(
                    f'unknown cost {cost!r}; expected one of {sorted(_BUILTIN_COSTS)} or a callable'
                )
            cost = _BUILTIN_COSTS[cost]
        elif not callable(cost):
            raise TypeError(f'cost must be a name or a callable, got {type(cost).__name__}')
        self.cost_fn = cost
        self.cost_cfg = cost_cfg

    def __call__(
        self, preds: Tensor, targets: Tensor, group_key: Tensor, **extra: Any
    ) -> tuple[Tensor, Tensor]:
        """Match batch-flattened predictions and targets inside their groups.

        Args:
            preds (Tensor): (M, ...) predictions of the real queries, in ``<REF>`` order.
            targets (Tensor): (M, ...) targets in the same order.
            group_key (Tensor): (M,) long, batch-unique group keys (:func:`flat_group_keys`).
            **extra: Per-call builder arguments (e.g. ``valid`` masks, ``tgt_visible``).

        Returns:
            tuple[Tensor, Tensor]: ``(pred_inds, tgt_inds)``, (M,) long each.
        """
        return match_in_groups(
            self.cost_fn, preds, targets, group_key, **{**self.cost_cfg, **extra}
        )

    def __repr__(self) -> str:
        name = getattr(self.cost_fn, '__name__', repr(self.cost_fn))
        return f'{type(self).__name__}(cost={name}, {self.cost_cfg})'
