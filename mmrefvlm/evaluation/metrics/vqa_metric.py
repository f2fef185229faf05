# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""VQAv2 accuracy and POPE yes/no metrics."""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from mmrefvlm.registry import METRICS

from ..functional import pope_yes_no, strip_trp, vqa_accuracy
from .base import RefVLMBaseMetric, TaskSpec, mean_or_nan, ratio_or_nan


def _answers(sample: dict) -> list[str]:
    """Reference answers: ``gt_vqa_answers``, else the plain ``gt_text``.

    Raises:
        ValueError: If the sample has neither.
    """
    answers = [a for a in (sample.get('gt_vqa_answers') or []) if a is not None]
    if not answers and sample.get('gt_text'):
        answers = [strip_trp(sample['gt_text'])]
    if not answers:
        raise ValueError(
            f'sample {sample.get("record_id")!r} (task {sample.get("task")!r}) has '
            'no reference answer (gt_vqa_answers / gt_text)'
        )
    return answers


@METRICS.register_module()
class VQAMetric(RefVLMBaseMetric):
    """VQAv2 accuracy (:func:`mmrefvlm.evaluation.functional.vqa_accuracy`): with 10 human
    answers, ``min(#matching / 3, 1)`` averaged over the 10 leave-one-out subsets; otherwise exact
    match with any reference; answers normalised as the VQAv2 evaluation does. The prediction is
    the plain text of ``pred_text`` (a missing prediction scores 0).

    Keys (percent): ``accuracy``.

    Args:
        tasks (Sequence[str]): Defaults to ``('vqa',)``.
        **kwargs: ``prefix``, ``collect_device``, ``collect_dir``.
    """

    default_prefix: ClassVar[str] = 'vqa'
    default_tasks: ClassVar[tuple[str, ...]] = ('vqa',)

    def process_sample(self, sample: dict) -> float:  # noqa: D102
        pred = strip_trp(self.prediction_text(sample))
        return vqa_accuracy(pred, _answers(sample)) if pred else 0.0

    def compute_from(self, results: list) -> dict[str, float]:  # noqa: D102
        return {'accuracy': mean_or_nan(results) * 100}


@METRICS.register_module()
class POPEMetric(RefVLMBaseMetric):
    """POPE object-hallucination metrics; "yes" is the positive class.

    Answers are mapped to yes/no from their first sentence: ``no`` if it contains the word "no"
    or "not"; otherwise, with ``answer_rule='strict'`` (default), ``yes`` only if it contains
    "yes", and with ``'pope'`` (the official rule) always ``yes``. An answer that is neither
    (empty, missing, or, with the strict rule, garbage) is wrong for accuracy, a false negative
    when the GT is yes, and not a "yes" for the yes-ratio. The strict rule keeps a diverged model
    that writes garbage from scoring as an always-"yes" model (recall 100); use ``'pope'`` to
    reproduce published POPE numbers.

    Keys (percent): ``accuracy``, ``precision``, ``recall``, ``F1``, ``yes_ratio``
    (predicted-yes / samples).

    Args:
        tasks (Sequence[str]): Defaults to ``('pope',)``.
        answer_rule (str): ``'strict'`` (default) or ``'pope'``.
        **kwargs: ``prefix``, ``collect_device``, ``collect_dir``.
    """

    default_prefix: ClassVar[str] = 'pope'
    default_tasks: ClassVar[tuple[str, ...]] = ('pope',)

    def __init__(self, tasks: TaskSpec = None, *, answer_rule: str = 'strict', **kwargs) -> None:
        super().__init__(tasks, **kwargs)
        if answer_rule not in ('strict', 'pope'):
            raise ValueError(f"answer_rule must be 'strict' or 'pope', got {answer_rule!r}")
        self.answer_rule = answer_rule

    def process_sample(self, sample: dict) -> tuple[str, str | None]:  # noqa: D102
        gt = pope_yes_no(_answers(sample)[0])
        if gt is None:
            raise ValueError(f'sample {sample.get("record_id")!r}: GT answer is not yes/no')
        pred = strip_trp(self.prediction_text(sample))
        return gt, pope_yes_no(pred, strict=self.answer_rule == 'strict')

    def compute_from(self, results: list) -> dict[str, float]:  # noqa: D102
        gt = np.array([r[0] == 'yes' for r in results], dtype=bool)
        pred_yes = np.array([r[1] == 'yes' for r in results], dtype=bool)
        pred_no = np.array([r[1] == 'no' for r in results], dtype=bool)
        tp = float((gt & pred_yes).sum())
        precision = ratio_or_nan(tp, pred_yes.sum())
        recall = ratio_or_nan(tp, gt.sum())
        f1 = (
            2 * precision * recall / (precision + recall)
            if precision + recall > 0
            else (0.0 if len(results) else float('nan'))
        )
        correct = (gt & pred_yes) | (~gt & pred_no)
        return {
            'accuracy': ratio_or_nan(correct.sum(), len(results)) * 100,
            'precision': precision * 100,
            'recall': recall * 100,
            'F1': f1 * 100,
            'yes_ratio': ratio_or_nan(pred_yes.sum(), len(results)) * 100,
        }
