# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""Names and result types of the record schema (docs/data_format.md), re-exported by ``records``."""

from __future__ import annotations

import os.path as osp
from dataclasses import dataclass, field

__all__ = [
    'TASKS',
    'REFERENCE_TASKS',
    'REFERENCE_TYPES',
    'UNIT_GEOMETRY',
    'IMAGE_LEVEL_UNITS',
    'TEMPLATE_DIR',
    'IMAGE_TOKEN',
    'VPT_TOKEN',
    'PROMPT_TYPES',
    'MAX_NESTING',
    'RecordError',
    'RecordLine',
    'TemplateSetInfo',
    'ValidationReport',
]

#: Task names of docs/data_format.md (a template set under TEMPLATE_DIR may add more).
TASKS: tuple[str, ...] = (
    'caption',
    'vqa',
    'rec',
    'res',
    'reg',
    'gres',
    'ig_box',
    'ig_mask',
    'ig_keypoint',
    'gcg_box',
    'gcg_mask',
    'ovd',
    'ovs',
    'keypoint',
    'depth',
)
#: Tasks whose records refer to the target through ``references`` (another image, a sound) that
#: plugins consume (AnyRef, ``projects/anyref``); the demo generator writes them on request.
REFERENCE_TASKS: tuple[str, ...] = ('image_ref_seg', 'audio_ref_seg')
#: Types of a record's ``references`` entries.
REFERENCE_TYPES: tuple[str, ...] = ('image', 'audio')
#: Instance field a unit's targets must carry. Units not listed (plugins) are not checked.
UNIT_GEOMETRY: dict[str, str] = {'box': 'bbox', 'mask': 'mask', 'keypoint': 'keypoints'}
#: Units whose target is the whole image (``null``) instead of an instance.
IMAGE_LEVEL_UNITS: frozenset[str] = frozenset({'depth'})
#: Default folder of template sets ``<name>.json``.
TEMPLATE_DIR = osp.join(osp.dirname(osp.abspath(__file__)), 'templates')

IMAGE_TOKEN, VPT_TOKEN = '<image>', '[VPT]'
#: Visual prompt types.
PROMPT_TYPES = ('point', 'box', 'scribble', 'mask')
#: Deepest phrase nesting of a structured answer.
MAX_NESTING = 16


@dataclass(frozen=True)
class RecordError:
    """One problem of one record.

    Args:
        record_id (str | None): The record's ``id`` (None when unreadable or missing).
        line (int | None): 1-based line in the JSONL file.
        field (str): Path of the offending field, e.g. ``instances[2].bbox`` ('' = whole record).
        message (str): What is wrong, with the offending value.
    """

    record_id: str | None
    line: int | None
    field: str
    message: str

    def __str__(self) -> str:
        where = f'line {self.line} ' if self.line is not None else ''
        return f'{where}id={self.record_id or "?"} field={self.field or "<record>"}: {self.message}'


@dataclass(frozen=True)
class RecordLine:
    """One non-blank JSONL line: the parsed record, or the error that prevented parsing."""

    line: int
    record: dict | None
    error: RecordError | None


@dataclass(frozen=True)
class TemplateSetInfo:
    """What the validator needs of a template set file.

    Args:
        name (str): Set name (file stem).
        task (str): The set's task.
        slots (tuple[str, ...]): Slot names (without ``<>``) every reference must fill.
        vpt_counts (frozenset[int]): Distinct ``[VPT]`` counts over the templates (one when the
            set is consistent).
        max_images (int): Most ``<image>`` in one template.
    """

    name: str
    task: str
    slots: tuple[str, ...]
    vpt_counts: frozenset[int]
    max_images: int


@dataclass
class ValidationReport:
    """Result of :func:`validate_file`: counts, and the first ``max_errors`` errors."""

    path: str
    num_records: int = 0
    num_invalid: int = 0
    num_errors: int = 0
    errors: list[RecordError] = field(default_factory=list)
