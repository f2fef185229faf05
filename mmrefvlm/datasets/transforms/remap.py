# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""``RemapRecordUnits``: reuse existing records for another unit by rewriting them on the fly.

A plugin unit whose targets derive from instances the records already have (a ``point`` from a
keypoint, a ``line`` from a box) needs no converter and no transform of its own: this transform
renames the units of the answers (and the task and template set), and a
:class:`~.geometry_target.GeometryTarget` with the plugin's mapping function builds the targets::

    dict(type=RemapRecordUnits, unit_map=dict(box='line'), task='line',
         template_map=dict(rec='line'))
    ...
    dict(type=BuildUnitTargets, unit_targets=dict(
        line=dict(type=GeometryTarget, field='lines', from_instance=box_diagonal)))
"""

from __future__ import annotations

import copy
from collections.abc import Mapping

from mmcv.transforms import BaseTransform

from mmrefvlm.registry import TRANSFORMS
from mmrefvlm.trp import iter_groups


def _check_names(value: object, what: str) -> dict[str, str]:
    if not isinstance(value, Mapping) or not all(
        isinstance(k, str) and k and isinstance(v, str) and v for k, v in value.items()
    ):
        raise ValueError(f'{what} must map non-empty names to non-empty names, got {value!r}')
    return dict(value)


@TRANSFORMS.register_module()
class RemapRecordUnits(BaseTransform):
    """Rewrite a record's answers to other units (and its task and template set).

    Put it first in the pipeline (it edits the record, not images or tokens). With
    ``unit_map=dict(box='point')``, ``task='point'`` and ``template_map=dict(rec='point')`` the
    demo's ``rec`` records (one box per ``<REF>``) become ``point`` records (one point per
    ``<REF>``, the same target instances), rendered with the ``point`` template set. The record is
    deep-copied first: the dataset's stored record is never modified. A unit that the map turns
    into one the group already has appears once.

    Args:
        unit_map (Mapping[str, str]): Old unit name -> new unit name, applied to every group of
            every structured assistant answer; other units stay.
        task (str, optional): New ``task`` of the record (selects the system command and the
            metrics' task filter). None keeps it.
        template_map (Mapping[str, str], optional): Old template-set name -> new one, applied to
            user turns that reference a set (``{"template": ...}``).

    Raises:
        ValueError: ``unit_map`` is empty or maps to an empty name (at construction), or an answer
            is not a valid structured answer (per record).
    """

    def __init__(
        self,
        unit_map: Mapping[str, str],
        *,
        task: str | None = None,
        template_map: Mapping[str, str] | None = None,
    ) -> None:
        self.unit_map = _check_names(unit_map, 'unit_map')
        if not self.unit_map:
            raise ValueError('unit_map must name at least one unit to rewrite')
        if task is not None and (not isinstance(task, str) or not task):
            raise ValueError(f'task must be a non-empty string or None, got {task!r}')
        self.task = task
        self.template_map = _check_names(template_map or {}, 'template_map')

    def transform(self, results: dict) -> dict:
        """Rewrite ``results['conversation']`` (a copy) and ``results['task']``.

        Args:
            results (dict): A record (``conversation``, ``task``, ...).

        Returns:
            dict: The same dict with the rewritten copy of the conversation.
        """
        conversation = copy.deepcopy(results['conversation'])
        for turn in conversation:
            if turn.get('role') == 'user' and 'template' in turn:
                turn['template'] = self.template_map.get(turn['template'], turn['template'])
            elif turn.get('role') == 'assistant' and not isinstance(turn.get('answer'), str):
                for _, _, _, group in iter_groups(turn['answer']):
                    units = [self.unit_map.get(u, u) for u in group['units']]
                    group['units'] = list(dict.fromkeys(units))
        results['conversation'] = conversation
        if self.task is not None:
            results['task'] = self.task
        return results

    def __repr__(self) -> str:
        return (
            f'{type(self).__name__}(unit_map={self.unit_map}, task={self.task!r}, '
            f'template_map={self.template_map})'
        )
