# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""Common base of mmrefvlm metrics: task filtering, one result per sample, field access."""

from __future__ import annotations

import logging
from abc import abstractmethod
from collections.abc import Iterable, Sequence
from typing import Any, ClassVar

import numpy as np
from mmengine.evaluator import BaseMetric
from mmengine.logging import print_log
from mmengine.structures import BaseDataElement

from ..functional import to_numpy

#: Result of a sample of another task. Not None: MMEngine's ``collect_results`` drops None
#: entries *before* truncating to the dataset size, which would then keep the sampler's padding.
OTHER_TASK = '__mmrefvlm_other_task__'

#: The ``tasks`` argument of every metric: task names, one name, or None for the default.
TaskSpec = Sequence[str] | str | None


def as_sample_dict(sample: Any) -> dict:
    """A data sample as a plain dict (MMEngine's Evaluator already calls ``to_dict()``).

    Raises:
        TypeError: If ``sample`` is neither a dict nor a ``BaseDataElement``.
    """
    if isinstance(sample, BaseDataElement):
        return sample.to_dict()
    if isinstance(sample, dict):
        return sample
    raise TypeError(f'a data sample must be a dict or BaseDataElement, got {type(sample).__name__}')


def select_unit(instances: Any, unit: str) -> dict[str, Any]:
    """The entries of ``gt_instances`` / ``pred_instances`` whose ``units`` entry is ``unit``.

    Tensors become numpy arrays, lists stay lists. Missing instances give an empty selection
    (``{'num': 0}``): a missing prediction is a miss, never a skipped sample. Instances without a
    ``units`` field are taken as all of ``unit``.

    Args:
        instances (dict | InstanceData | None): The instances.
        unit (str): Unit name.

    Returns:
        dict[str, Any]: ``num`` (int) plus every field restricted to the unit's entries.
    """
    if instances is None:
        return {'num': 0}
    if isinstance(instances, BaseDataElement):
        instances = instances.to_dict()
    units = instances.get('units')
    if units is None:
        lengths = [len(v) for v in instances.values() if hasattr(v, '__len__')]
        keep = np.ones(lengths[0] if lengths else 0, dtype=bool)
    else:
        keep = np.array([u == unit for u in units], dtype=bool)
    out: dict[str, Any] = {'num': int(keep.sum())}
    for key, value in instances.items():
        if key == 'units':
            continue
        if isinstance(value, (list, tuple)) and len(value) == len(keep):
            out[key] = [v for v, k in zip(value, keep, strict=True) if k]
        elif hasattr(value, 'shape') and len(value.shape) and value.shape[0] == len(keep):
            out[key] = to_numpy(value)[keep]
    return out


def image_shape(sample: dict) -> tuple[int, int]:
    """(H, W) of the original image from ``ori_shape``.

    Raises:
        ValueError: If the sample has no ``ori_shape``.
    """
    shape = sample.get('ori_shape')
    if shape is None:
        raise ValueError(f'sample {sample.get("record_id")!r} has no ori_shape')
    return int(shape[0]), int(shape[1])


class RefVLMBaseMetric(BaseMetric):
    """Base of mmrefvlm metrics.

    ``process`` appends **exactly one result per data sample**: ``process_sample``'s value for
    samples whose ``task`` is in ``tasks`` and the string :data:`OTHER_TASK` otherwise.
    MMEngine's ``collect_results`` interleaves the ranks' results and truncates them to the
    dataset size to drop the sampler's padding, which is only right with one (non-None) result
    per sample; ``compute_metrics`` then drops the placeholders and calls ``compute_from``.

    Args:
        tasks (Sequence[str], optional): Tasks this metric evaluates; other samples are ignored.
            Defaults to ``default_tasks`` (None there means every task).
        prefix (str, optional): Key prefix. Defaults to ``default_prefix`` (the task family).
        collect_device (str): ``'cpu'`` or ``'gpu'``. Defaults to ``'cpu'``.
        collect_dir (str, optional): Folder for CPU collection.
    """

    default_tasks: ClassVar[tuple[str, ...] | None] = None

    def __init__(
        self,
        tasks: TaskSpec = None,
        *,
        prefix: str | None = None,
        collect_device: str = 'cpu',
        collect_dir: str | None = None,
    ) -> None:
        super().__init__(collect_device=collect_device, prefix=prefix, collect_dir=collect_dir)
        tasks = self.default_tasks if tasks is None else tasks
        if isinstance(tasks, str):
            tasks = (tasks,)
        if tasks is not None and (not tasks or not all(isinstance(t, str) for t in tasks)):
            raise ValueError(f'tasks must be a non-empty sequence of task names, got {tasks!r}')
        self.tasks: frozenset[str] | None = None if tasks is None else frozenset(tasks)

    def process(self, data_batch: Any, data_samples: Sequence[Any]) -> None:
        """Append one result (:data:`OTHER_TASK` for another task) per sample of the batch."""
        for sample in data_samples:
            sample = as_sample_dict(sample)
            if self.tasks is not None and sample.get('task') not in self.tasks:
                self.results.append(OTHER_TASK)
                continue
            result = self.process_sample(sample)
            if result is None:
                raise RuntimeError(f'{type(self).__name__}.process_sample returned None')
            self.results.append(result)

    @abstractmethod
    def process_sample(self, sample: dict) -> Any:
        """Small picklable per-sample result (numbers, strings, RLE), never full-size masks."""

    def compute_metrics(self, results: list) -> dict[str, float]:
        """Drop other tasks' placeholders and compute the metrics of the remaining samples."""
        kept = [r for r in results if not (isinstance(r, str) and r == OTHER_TASK)]
        if not kept:
            print_log(
                f'{type(self).__name__}: no sample of tasks {sorted(self.tasks or [])} '
                'was evaluated; metrics are NaN',
                logger='current',
                level=logging.WARNING,
            )
        return self.compute_from(kept)

    @abstractmethod
    def compute_from(self, results: list) -> dict[str, float]:
        """Metrics (without prefix) from the kept per-sample results."""


def mean_or_nan(values: Iterable[float]) -> float:
    """Mean of the values, NaN for none (an undefined metric is never reported as 0)."""
    vals = list(values)
    return float(np.mean(vals)) if vals else float('nan')


def ratio_or_nan(num: float, den: float) -> float:
    """``num / den``, NaN when ``den`` is 0."""
    return float(num) / float(den) if den else float('nan')
