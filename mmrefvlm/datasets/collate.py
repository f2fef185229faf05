# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""Collate function: keep per-sample ``inputs`` dicts (text-only samples have no images, so
MMEngine's ``pseudo_collate``, which transposes dicts by the first sample's keys, cannot be
used)."""

from __future__ import annotations

from collections.abc import Sequence

from mmrefvlm.registry import FUNCTIONS


@FUNCTIONS.register_module()
def refvlm_collate(data_batch: Sequence[dict]) -> dict:
    """``[dict(inputs=..., data_samples=...), ...]`` -> ``dict(inputs=[...], data_samples=[...])``.

    Padding and stacking happen in ``RefVLMDataPreprocessor`` (on the training device).
    """
    return dict(
        inputs=[d['inputs'] for d in data_batch],
        data_samples=[d['data_samples'] for d in data_batch],
    )
