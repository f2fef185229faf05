# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""The JSONL record schema of docs/data_format.md: task names, validator, reader, small builders.

``validate_record`` implements the "Validation rules" section of docs/data_format.md and returns
every problem as a :class:`RecordError` naming the record (id, line) and the field path, e.g.
``conversation[1].answer[0].groups[0].targets[1]``. ``iter_records`` reads JSONL and turns bad
lines (not UTF-8, not JSON, not an object) into errors instead of exceptions.
"""

from __future__ import annotations

import json
import os
import os.path as osp
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

from .files import DEFAULT_MAX_PIXELS
from .record_checker import RecordChecker
from .record_schema import (
    IMAGE_LEVEL_UNITS,
    IMAGE_TOKEN,
    REFERENCE_TASKS,
    TASKS,
    TEMPLATE_DIR,
    UNIT_GEOMETRY,
    VPT_TOKEN,
    RecordError,
    RecordLine,
    TemplateSetInfo,
    ValidationReport,
)

__all__ = [
    'TASKS',
    'REFERENCE_TASKS',
    'UNIT_GEOMETRY',
    'IMAGE_LEVEL_UNITS',
    'TEMPLATE_DIR',
    'IMAGE_TOKEN',
    'VPT_TOKEN',
    'RecordError',
    'RecordLine',
    'TemplateSetInfo',
    'ValidationReport',
    'load_template_sets',
    'validate_record',
    'iter_records',
    'validate_file',
    'phrase_group',
    'template_turn',
    'with_system_turn',
]


def load_template_sets(folder: str | None = None) -> dict[str, TemplateSetInfo]:
    """Read the template sets ``<folder>/<name>.json`` (``{task, slots, system, templates}``).

    Args:
        folder (str, optional): Default :data:`TEMPLATE_DIR`. A missing folder gives ``{}``.

    Returns:
        dict[str, TemplateSetInfo]: By set name.

    Raises:
        ValueError: A template file that is not valid JSON or does not follow the schema.
    """
    folder = TEMPLATE_DIR if folder is None else folder
    if not osp.isdir(folder):
        return {}
    sets = {}
    for name in sorted(os.listdir(folder)):
        if not name.endswith('.json'):
            continue
        path = osp.join(folder, name)
        try:
            with open(path, encoding='utf-8') as f:
                data = json.load(f)
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            raise ValueError(f'template set {path}: cannot read ({err})') from err
        templates, slots = data.get('templates'), data.get('slots', [])
        if (
            not isinstance(data, dict)
            or not isinstance(templates, list)
            or not templates
            or not all(isinstance(t, str) for t in templates)
            or not isinstance(slots, list)
            or not all(isinstance(s, str) for s in slots)
        ):
            raise ValueError(
                f'template set {path}: expected {{"task": str, "slots": [str], '
                '"system": str, "templates": [str, ...]}'
            )
        stem = name[: -len('.json')]
        sets[stem] = TemplateSetInfo(
            name=stem,
            task=str(data.get('task', stem)),
            slots=tuple(s.strip('<>') for s in slots),
            vpt_counts=frozenset(t.count(VPT_TOKEN) for t in templates),
            max_images=max(t.count(IMAGE_TOKEN) for t in templates),
        )
    return sets


def validate_record(
    record: Any,
    *,
    line: int | None = None,
    data_root: str | None = None,
    template_sets: Mapping[str, TemplateSetInfo] | None = None,
    known_units: Iterable[str] | None = None,
    allow_outside_data_root: bool = False,
    allow_open_turn: bool = False,
    special_tokens: Iterable[str] = (),
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> list[RecordError]:
    """Check one record against docs/data_format.md.

    Args:
        record (Any): The parsed JSON value of one line.
        line (int, optional): Its line number, copied into the errors.
        data_root (str, optional): When given, image and depth paths must resolve inside it and
            the files are header-checked (readable, at most ``max_pixels``, of the record's size;
            depth: 16-bit PNG or 2-D npy). Without it only the path strings are checked.
        template_sets (Mapping[str, TemplateSetInfo], optional): From :func:`load_template_sets`;
            default: read :data:`TEMPLATE_DIR` now. An empty mapping skips template checks.
        known_units (Iterable[str], optional): When given, group units must be among them.
        allow_outside_data_root (bool): Accept absolute paths and paths leaving the data root
            (the dataset's switch of the same name). Default False.
        allow_open_turn (bool): Accept a conversation ending with a user turn (records for
            predict mode only). Default False.
        special_tokens (Iterable[str]): Special-token strings of the tokenizer in use, refused in
            text like the common ones (``</s>``, ``<|endoftext|>``...).
        max_pixels (int): Pixel limit of image and depth files (the loaders' ``max_pixels``).

    Returns:
        list[RecordError]: Empty when the record is valid.
    """
    if not isinstance(record, dict):
        return [
            RecordError(
                None, line, '', f'a record must be a JSON object, got {type(record).__name__}'
            )
        ]
    sets = load_template_sets() if template_sets is None else template_sets
    units = frozenset(known_units) if known_units is not None else None
    return RecordChecker(
        record,
        line,
        data_root,
        sets,
        units,
        allow_outside_data_root=allow_outside_data_root,
        allow_open_turn=allow_open_turn,
        special_tokens=tuple(special_tokens),
        max_pixels=max_pixels,
    ).run()


def iter_records(path: str) -> Iterator[RecordLine]:
    """Read a JSONL file; blank lines are skipped, bad lines come back as errors (never raise).

    Args:
        path (str): The JSONL file.

    Yields:
        RecordLine: ``record`` set for a JSON object, else ``error`` set.
    """
    with open(path, 'rb') as f:
        for lineno, raw in enumerate(f, 1):
            if not raw.strip():
                continue
            try:
                text = raw.decode('utf-8')
            except UnicodeDecodeError as err:
                yield RecordLine(lineno, None, RecordError(None, lineno, '', f'not UTF-8: {err}'))
                continue
            try:
                value = json.loads(text.lstrip('\ufeff') if lineno == 1 else text)
            except json.JSONDecodeError as err:
                yield RecordLine(
                    lineno, None, RecordError(None, lineno, '', f'invalid JSON: {err}')
                )
                continue
            if not isinstance(value, dict):
                yield RecordLine(
                    lineno,
                    None,
                    RecordError(
                        None,
                        lineno,
                        '',
                        f'a record must be a JSON object, got {type(value).__name__}',
                    ),
                )
                continue
            yield RecordLine(lineno, value, None)


def validate_file(
    path: str,
    *,
    data_root: str | None = None,
    template_sets: Mapping[str, TemplateSetInfo] | None = None,
    known_units: Iterable[str] | None = None,
    max_errors: int | None = None,
    **options: Any,
) -> ValidationReport:
    """Validate every line of a JSONL file, plus id uniqueness within the file.

    Args:
        path (str): The JSONL file.
        data_root (str, optional): See :func:`validate_record`.
        template_sets (Mapping[str, TemplateSetInfo], optional): Default: read once now.
        known_units (Iterable[str], optional): See :func:`validate_record`.
        max_errors (int, optional): Keep at most this many errors (all are still counted).
        **options: ``allow_outside_data_root``, ``allow_open_turn``, ``special_tokens``,
            ``max_pixels`` of :func:`validate_record`.

    Returns:
        ValidationReport: Counts and errors.
    """
    sets = load_template_sets() if template_sets is None else template_sets
    units = frozenset(known_units) if known_units is not None else None
    report = ValidationReport(path)
    first_line: dict[str, int] = {}
    for item in iter_records(path):
        report.num_records += 1
        errors = (
            [item.error]
            if item.error
            else validate_record(
                item.record,
                line=item.line,
                data_root=data_root,
                template_sets=sets,
                known_units=units,
                **options,
            )
        )
        rid = item.record.get('id') if item.record else None
        if isinstance(rid, str):
            if rid in first_line:
                errors.append(
                    RecordError(
                        rid, item.line, 'id', f'duplicate id (first on line {first_line[rid]})'
                    )
                )
            else:
                first_line[rid] = item.line
        if errors:
            report.num_invalid += 1
            report.num_errors += len(errors)
            room = len(errors) if max_errors is None else max(0, max_errors - len(report.errors))
            report.errors.extend(errors[:room])
    return report


def phrase_group(phrase: str | list, units: Sequence[str], targets: Sequence[int | None]) -> dict:
    """A phrase with one group of ``len(targets)`` ``<REF>`` (``targets=[]`` means "no object")."""
    return {
        'phrase': phrase,
        'groups': [{'units': list(units), 'n': len(targets), 'targets': list(targets)}],
    }


def with_system_turn(conversation: Sequence[dict], system: str | None) -> list[dict]:
    """The conversation with ``system`` as its (only, first) system turn, replacing the record's;
    ``system=None`` keeps the record's. A new list; the turns themselves are not copied."""
    if system is None:
        return list(conversation)
    turns = [t for t in conversation if t.get('role') != 'system']
    return [{'role': 'system', 'content': system}, *turns]


def template_turn(template: str, **slots: str) -> dict:
    """A user turn referring to a template set, e.g. ``template_turn('rec', expr='the dog')``."""
    return {'role': 'user', 'template': template, 'slots': dict(slots)}
