# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""Grouped Hungarian matching (REF-VLM App. C.1): batched group costs + per-group assignment."""

from .assignment import assign_in_groups, grouped_assignment, match_in_groups
from .batched import (
    MatchRequest,
    match_slots,
    plan_match_layout,
    query_layout,
    select_items,
    solve_assignments,
)
from .group_costs import (
    GroupedCosts,
    box_group_costs,
    layout_of,
    mask_group_costs,
    point_group_costs,
)
from .group_layout import (
    GroupPadding,
    GroupSlots,
    flat_group_keys,
    group_slots,
    pad_by_group,
    scatter_rows,
    scatter_to_slots,
)
from .grouped_hungarian_matcher import GroupedHungarianMatcher
from .pairwise_costs import (
    box_cxcywh_to_xyxy,
    mask_costs_from_rows,
    mask_pred_terms,
    mask_target_rows,
    pairwise_box_costs,
    pairwise_giou,
    pairwise_mask_costs,
    pairwise_point_costs,
)

__all__ = [
    'grouped_assignment',
    'assign_in_groups',
    'match_in_groups',
    'MatchRequest',
    'match_slots',
    'plan_match_layout',
    'query_layout',
    'select_items',
    'solve_assignments',
    'layout_of',
    'GroupedCosts',
    'box_group_costs',
    'mask_group_costs',
    'point_group_costs',
    'GroupPadding',
    'GroupSlots',
    'pad_by_group',
    'group_slots',
    'scatter_to_slots',
    'flat_group_keys',
    'GroupedHungarianMatcher',
    'box_cxcywh_to_xyxy',
    'pairwise_giou',
    'pairwise_box_costs',
    'pairwise_mask_costs',
    'pairwise_point_costs',
    'mask_pred_terms',
    'mask_target_rows',
    'mask_costs_from_rows',
    'scatter_rows',
]
