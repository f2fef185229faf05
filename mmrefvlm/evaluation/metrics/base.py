# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""Common base of mmrefvlm metrics: task filtering, one result per sample, field access."""

from __future__ import annotations

import logging
from abc import abstractmethod
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
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

#: A coordinate off every image: where an invalid keypoint / point prediction is moved (its
#: OKS is exp(-huge) = 0, its distance to any target maximal), instead of a NaN that
#: pycocotools' ``iou < thr`` test would let match anything.
FAR_AWAY = -1e9
#: Fields whose values are independent per element (pixels): only non-finite elements are
#: replaced (by 0: background / min depth). Other fields are per entry: an entry with any
#: non-finite value is replaced as a whole.
ELEMENT_FIELDS = ('masks', 'depth')
#: Replacement of an invalid entry, per field: an empty box at the origin (overlaps nothing,
#: like a missing prediction), score 0. Fields not listed (points, keypoints...) go FAR_AWAY.
MISS_VALUES: dict[str, float] = {'bboxes': 0.0, 'scores': 0.0}
#: Value of a field an entry's unit does not produce (``unit_fields``), where merging units
#: padded it with NaN: a score is then 1.0, as for a unit without scores.
ABSENT_VALUES: dict[str, float] = {'scores': 1.0}


def sanitize_predictions(selected: dict, fields: Sequence[str]) -> tuple[dict, int]:
    """Turn non-finite predictions into counted misses (the one place metrics do this).

    An entry with a non-finite value in any of ``fields`` is a miss: its per-entry fields get
    :data:`MISS_VALUES` (boxes, scores) or :data:`FAR_AWAY` (coordinates; keypoints keep their
    other columns at 0), its element fields (masks, depth) get 0 where they were not finite. It
    stays an entry (a prediction that hits nothing: a false positive for AP, a wrong answer for
    accuracy), so a diverged model can never score better than one that predicts nothing. A
    field an entry's unit does not produce (not in its ``unit_fields``: NaN padding from merging
    units) is not judged; it gets :data:`ABSENT_VALUES` where one is defined.

    Args:
        selected (dict): From :func:`select_unit` (numpy arrays); not modified.
        fields (Sequence[str]): The prediction fields the metric reads.

    Returns:
        tuple[dict, int]: The sanitised selection (with ``num_invalid``) and the number of
        invalid entries.
    """
    num = int(selected.get('num', 0))
    if num == 0:
        return dict(selected, num_invalid=0), 0
    produced = selected.get('unit_fields')
    if not isinstance(produced, list) or len(produced) != num:
        produced = None
    bad = np.zeros(num, dtype=bool)
    arrays, absent = {}, {}
    for key in fields:
        value = selected.get(key)
        if value is None or isinstance(value, list):
            continue
        arr = np.asarray(value)
        if arr.dtype.kind not in 'fc' or len(arr) != num:
            continue  # integers and booleans are always finite
        arrays[key] = arr
        absent[key] = (
            np.array([key not in f for f in produced], dtype=bool)
            if produced is not None
            else np.zeros(num, dtype=bool)
        )
        bad |= ~np.isfinite(arr.reshape(num, -1)).all(1) & ~absent[key]
    filled = {k: a for k, a in absent.items() if a.any() and k in ABSENT_VALUES}
    if not bad.any() and not filled:
        return dict(selected, num_invalid=0), 0
    out = dict(selected, num_invalid=int(bad.sum()))
    for key, arr in arrays.items():
        if not bad.any() and key not in filled:
            continue
        arr = arr.copy()
        if key in filled:
            arr[filled[key]] = ABSENT_VALUES[key]
        if key in ELEMENT_FIELDS:
            arr[~np.isfinite(arr)] = 0
        elif key == 'keypoints' and arr.ndim == 3:
            arr[bad] = 0
            arr[bad, :, :2] = FAR_AWAY
        else:
            arr[bad] = MISS_VALUES.get(key, FAR_AWAY)
        out[key] = arr
    return out, int(bad.sum())


@dataclass(frozen=True)
class _WithInvalid:
    """A per-sample result together with the number of invalid predictions it had."""

    result: Any
    num_invalid: int


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
        self._num_invalid = 0  # invalid predictions of the sample being processed

    def process(self, data_batch: Any, data_samples: Sequence[Any]) -> None:
        """Append one result (:data:`OTHER_TASK` for another task) per sample of the batch."""
        for sample in data_samples:
            sample = as_sample_dict(sample)
            if self.tasks is not None and sample.get('task') not in self.tasks:
                self.results.append(OTHER_TASK)
                continue
            self._num_invalid = 0
            result = self.process_sample(sample)
            if result is None:
                raise RuntimeError(f'{type(self).__name__}.process_sample returned None')
            self.results.append(
                _WithInvalid(result, self._num_invalid) if self._num_invalid else result
            )

    def predictions(self, sample: dict, unit: str, fields: Sequence[str]) -> dict[str, Any]:
        """The sample's predictions of ``unit`` (:func:`select_unit`), with every entry that
        has a non-finite value in ``fields`` made a counted miss (:func:`sanitize_predictions`).

        Metrics read predictions only through this method (and :meth:`prediction_text`); the
        count is reported as ``invalid_preds`` by :meth:`compute_metrics`.
        """
        selected, num_bad = sanitize_predictions(
            select_unit(sample.get('pred_instances'), unit), fields
        )
        self._num_invalid += num_bad
        return selected

    def prediction_array(self, value: Any) -> np.ndarray | None:
        """A sample-level float prediction map (e.g. ``pred_depth``): non-finite elements become
        0 and the map counts as one invalid prediction."""
        if value is None:
            return None
        arr = to_numpy(value, np.float64)
        finite = np.isfinite(arr)
        if finite.all():
            return arr
        self._num_invalid += 1
        return np.where(finite, arr, 0.0)

    def prediction_text(self, sample: dict) -> str:
        """``pred_text`` if it is a string, else ``''`` (a miss; a non-string is counted as an
        invalid prediction)."""
        text = sample.get('pred_text')
        if isinstance(text, str):
            return text
        if text is not None:
            self._num_invalid += 1
        return ''

    @abstractmethod
    def process_sample(self, sample: dict) -> Any:
        """Small picklable per-sample result (numbers, strings, RLE), never full-size masks."""

    def compute_metrics(self, results: list) -> dict[str, float]:
        """Drop other tasks' placeholders and compute the metrics of the remaining samples.

        When some predictions were invalid (non-finite numbers, a non-text ``pred_text``), they
        were scored as misses; their number is added as ``invalid_preds`` and logged.
        """
        kept = [r for r in results if not (isinstance(r, str) and r == OTHER_TASK)]
        if not kept:
            print_log(
                f'{type(self).__name__}: no sample of tasks {sorted(self.tasks or [])} '
                'was evaluated; metrics are NaN',
                logger='current',
                level=logging.WARNING,
            )
        invalid = [r.num_invalid for r in kept if isinstance(r, _WithInvalid)]
        kept = [r.result if isinstance(r, _WithInvalid) else r for r in kept]
        metrics = self.compute_from(kept)
        if invalid:
            print_log(
                f'{type(self).__name__}: {sum(invalid)} invalid predictions (non-finite) in '
                f'{len(invalid)} of {len(kept)} samples were scored as misses',
                logger='current',
                level=logging.WARNING,
            )
            metrics['invalid_preds'] = float(sum(invalid))
        return metrics

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
