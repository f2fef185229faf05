# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""Visual-prompt encoders (parameter-free mask-guided aggregation)."""

from .mask_guided_aggregation import MaskGuidedAggregation, block_one_hot, grid_position_code

__all__ = ['MaskGuidedAggregation', 'block_one_hot', 'grid_position_code']
