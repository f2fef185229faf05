# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""Data transforms of the ``point`` example: turn existing records into ``point`` records, and
render conversations with the plugin's own template set."""

from __future__ import annotations

import copy
import os.path as osp
from collections.abc import Mapping

from mmcv.transforms import BaseTransform

from mmrefvlm.registry import TRANSFORMS
from mmrefvlm.trp import iter_groups

#: The template sets shipped with this project (``point.json``).
POINT_TEMPLATE_DIR = osp.join(osp.dirname(osp.abspath(__file__)), 'templates')


@TRANSFORMS.register_module()
class RemapRecordUnits(BaseTransform):
    """Rewrite a record's answers to another unit (and task / template set).

    Put it first in the pipeline (it edits the record, not images or tokens). With
    ``unit_map=dict(box='point')``, ``task='point'`` and ``template_map=dict(rec='point')`` the
    demo's ``rec`` records (one box per ``<REF>``) become ``point`` records (one point per
    ``<REF>``, same target instances), rendered with the ``point`` template set. The record is
    deep-copied first: the dataset's stored record is never modified.

    Args:
        unit_map (Mapping[str, str]): Old unit name -> new unit name, applied to every group of
            every structured assistant answer.
        task (str, optional): New ``task`` of the record (selects the system command and the
            metrics' task filter). None keeps it.
        template_map (Mapping[str, str], optional): Old template-set name -> new one, applied to
            user turns that reference a set (``{"template": ...}``).
    """

    def __init__(
        self,
        unit_map: Mapping[str, str],
        *,
        task: str | None = None,
        template_map: Mapping[str, str] | None = None,
    ) -> None:
        if not unit_map or not all(
            isinstance(k, str) and isinstance(v, str) and v for k, v in unit_map.items()
        ):
            raise ValueError(f'unit_map must map unit names to unit names, got {unit_map!r}')
        self.unit_map = dict(unit_map)
        self.task = task
        self.template_map = dict(template_map or {})

    def transform(self, results: dict) -> dict:  # noqa: D102
        conversation = copy.deepcopy(results['conversation'])
        for turn in conversation:
            if turn.get('role') == 'user' and 'template' in turn:
                turn['template'] = self.template_map.get(turn['template'], turn['template'])
            elif turn.get('role') == 'assistant' and not isinstance(turn.get('answer'), str):
                for _, _, _, group in iter_groups(turn['answer']):
                    group['units'] = [self.unit_map.get(u, u) for u in group['units']]
        results['conversation'] = conversation
        if self.task is not None:
            results['task'] = self.task
        return results
