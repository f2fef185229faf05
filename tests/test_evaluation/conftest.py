# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""Builders of ``RefVLMDataSample``s for metric tests, run through MMEngine's ``Evaluator``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest
import torch
from mmengine.evaluator import Evaluator
from mmengine.structures import InstanceData

from mmrefvlm.structures import RefVLMDataSample


def _instances(entries: Sequence[dict]) -> InstanceData:
    """InstanceData from per-entry dicts: ``unit``, ``label`` and geometry keys (``bbox``,
    ``mask``, ``keypoints``, ``depth``, ``score``) stacked into tensors."""
    inst = InstanceData()
    inst.units = [e['unit'] for e in entries]
    inst.labels = [e.get('label', '') for e in entries]
    inst.group_ids = torch.arange(len(entries), dtype=torch.long)
    for key, field in (
        ('bbox', 'bboxes'),
        ('mask', 'masks'),
        ('keypoints', 'keypoints'),
        ('depth', 'depth'),
        ('score', 'scores'),
    ):
        if entries and all(key in e for e in entries):
            inst.set_field(torch.stack([torch.as_tensor(e[key]) for e in entries]), field)
    return inst


def build_sample(
    task: str,
    *,
    shape: tuple[int, int] = (8, 8),
    gt: Sequence[dict] | None = (),
    pred: Sequence[dict] | None = None,
    idx: int = 0,
    **fields: Any,
) -> RefVLMDataSample:
    """A data sample. ``gt``/``pred``: lists of entry dicts (None: field absent). Other keyword
    arguments become data fields (``pred_text``, ``gt_captions``...) or, for ``prompt_types``,
    metainfo."""
    meta = dict(
        task=task,
        record_id=f'{task}-{idx}',
        sample_idx=idx,
        ori_shape=shape,
        prompt_types=fields.pop('prompt_types', []),
    )
    sample = RefVLMDataSample(metainfo=meta)
    if gt is not None:
        sample.gt_instances = _instances(gt)
    if pred is not None:
        sample.pred_instances = _instances(pred)
    for key, value in fields.items():
        sample.set_field(value, key)
    return sample


def run_metric(metric: Any, samples: Sequence[RefVLMDataSample], batch_size: int = 2) -> dict:
    """Evaluate samples with an MMEngine ``Evaluator`` in batches (the runner's path)."""
    evaluator = Evaluator(metric)
    for start in range(0, len(samples), batch_size):
        evaluator.process(data_samples=list(samples[start : start + batch_size]))
    return evaluator.evaluate(len(samples))


def box_mask(shape: tuple[int, int], box: Sequence[int]) -> torch.Tensor:
    """(H, W) bool mask of an integer xyxy rectangle."""
    m = torch.zeros(shape, dtype=torch.bool)
    x1, y1, x2, y2 = box
    m[y1:y2, x1:x2] = True
    return m


@pytest.fixture
def make_sample():
    return build_sample


@pytest.fixture
def evaluate():
    return run_metric


@pytest.fixture
def rect():
    return box_mask
