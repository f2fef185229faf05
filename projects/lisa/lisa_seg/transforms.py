# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""``UnionExpressionTargets``: REC / RES / GRES records -> one mask target per expression, the
way LISA and GSVA train on RefCOCO and gRefCOCO."""

from __future__ import annotations

import copy

from mmcv.transforms import BaseTransform

from mmrefvlm.datasets.records import with_system_turn
from mmrefvlm.datasets.transforms import TargetError, union_target_instance
from mmrefvlm.registry import TRANSFORMS
from mmrefvlm.trp import iter_groups

EMPTY_MODES = ('target', 'reject')


def _image_hw(results: dict) -> tuple[int, int]:
    shape = results.get('ori_shape')
    if shape is not None:
        return int(shape[0]), int(shape[1])
    image = results.get('image') or {}
    if 'height' not in image or 'width' not in image:
        raise TargetError(f'record {results.get("id")}: image size unknown (no ori_shape)')
    return int(image['height']), int(image['width'])


@TRANSFORMS.register_module()
class UnionExpressionTargets(BaseTransform):
    """Rewrite every referring expression of a record into one ``unit`` group with one target.

    LISA and GSVA decode one mask per expression: an expression that refers to several objects
    (gRefCOCO's multi-target case) gets the **union** of their masks, appended to ``instances``
    as a new instance (``mask`` RLE, ``bbox`` of the union, ``category='union'``); a single
    target is kept as it is. An expression that refers to nothing (``n == 0``) becomes, with
    ``empty='target'``, one target with an all-zero mask (LISA fine-tuned on gRefCOCO) and,
    with ``empty='reject'``, stays a zero-target group (GSVA's ``[REJ]``). Box answers (REC)
    become mask answers of the same object, so REC, RES and GRES records all train the mask
    decoder. The record is copied first (the dataset's stored record is never modified).

    Optionally the user turns that reference a template set use ``template`` instead (their
    ``expr`` slot is kept) and the conversation gets ``system`` as its system turn, so that all
    tasks share one prompt as in the methods' training.

    Args:
        unit (str): Unit of the rewritten groups. Defaults to ``'mask'``.
        empty (str): ``'target'`` or ``'reject'`` (see above). Defaults to ``'target'``.
        template (str, optional): Template set for user turns. None keeps theirs.
        system (str, optional): System prompt replacing the task's. None keeps it.
    """

    def __init__(
        self,
        *,
        unit: str = 'mask',
        empty: str = 'target',
        template: str | None = None,
        system: str | None = None,
    ) -> None:
        if empty not in EMPTY_MODES:
            raise ValueError(f'empty must be one of {EMPTY_MODES}, got {empty!r}')
        self.unit, self.empty, self.template, self.system = unit, empty, template, system

    def _rewrite_answer(self, answer: list, instances: list, hw: tuple[int, int], rid) -> None:
        for _, group_index, phrase_group, _ in list(iter_groups(answer)):
            if group_index:  # rewrite each phrase once, at its first group
                continue
            groups = phrase_group['groups']
            targets = sorted(
                {int(t) for g in groups for t in (g.get('targets') or []) if t is not None}
            )
            if targets and len(targets) == 1:
                new = {'units': [self.unit], 'n': 1, 'targets': targets}
            elif targets or self.empty == 'target':
                instances.append(union_target_instance(instances, targets, hw, rid))
                new = {'units': [self.unit], 'n': 1, 'targets': [len(instances) - 1]}
            else:
                new = {'units': [self.unit], 'n': 0, 'targets': []}
            phrase_group['groups'] = [new]

    def transform(self, results: dict) -> dict:  # noqa: D102
        rid = results.get('id')
        hw = _image_hw(results)
        conversation = copy.deepcopy(results['conversation'])
        instances = copy.deepcopy(results.get('instances') or [])
        for turn in conversation:
            if turn.get('role') == 'user' and 'template' in turn and self.template:
                turn['template'] = self.template
            elif turn.get('role') == 'assistant' and not isinstance(turn.get('answer'), str):
                self._rewrite_answer(turn['answer'], instances, hw, rid)
        results['conversation'] = with_system_turn(conversation, self.system)
        results['instances'] = instances
        return results
