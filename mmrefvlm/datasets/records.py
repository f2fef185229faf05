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
from dataclasses import dataclass, field
from typing import Any, TypeGuard

from .geometry import (
    check_bbox,
    check_depth_file,
    check_keypoints,
    check_mask,
    check_visual_prompt_geometry,
    is_number,
)

__all__ = [
    'TASKS',
    'UNIT_GEOMETRY',
    'IMAGE_LEVEL_UNITS',
    'TEMPLATE_DIR',
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
#: Instance field a unit's targets must carry. Units not listed (plugins) are not checked.
UNIT_GEOMETRY: dict[str, str] = {'box': 'bbox', 'mask': 'mask', 'keypoint': 'keypoints'}
#: Units whose target is the whole image (``null``) instead of an instance.
IMAGE_LEVEL_UNITS: frozenset[str] = frozenset({'depth'})
#: Default folder of template sets ``<name>.json``.
TEMPLATE_DIR = osp.join(osp.dirname(osp.abspath(__file__)), 'templates')

IMAGE_TOKEN, VPT_TOKEN = '<image>', '[VPT]'
#: TRP markup a structured answer must not spell out itself (the builder renders it).
_TRP_MARKUP = ('<REF>', '<Phrase>', '</Phrase>', '<Unit>', '</Unit>', '<Task>', '</Task>')
_PROMPT_TYPES = ('point', 'box', 'scribble', 'mask')
_DEPTH_EXT = {'png16': '.png', 'npy': '.npy'}
_MAX_NESTING = 16


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


def _is_int(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _relative_path_error(path: Any) -> str | None:
    if not isinstance(path, str) or not path:
        return f'path must be a non-empty string, got {path!r}'
    if osp.isabs(path) or path.startswith(('/', '\\')) or (len(path) > 1 and path[1] == ':'):
        return f'path {path!r} is absolute; write it relative to the data root'
    return None


class _RecordChecker:
    """Checks one record; collects errors in ``self.errors`` (one instance per record)."""

    def __init__(
        self,
        record: Mapping,
        line: int | None,
        data_root: str | None,
        template_sets: Mapping[str, TemplateSetInfo],
        known_units: frozenset[str] | None,
    ):
        self.record, self.line, self.data_root = record, line, data_root
        self.template_sets, self.known_units = template_sets, known_units
        rid = record.get('id')
        self.rid = rid if isinstance(rid, str) else None
        self.errors: list[RecordError] = []
        self.width = self.height = None
        self.num_vpt = self.num_image = 0

    def err(self, path: str, message: str) -> None:
        self.errors.append(RecordError(self.rid, self.line, path, message))

    def put(self, path: str, message: str | None) -> None:
        if message:
            self.err(path, message)

    def run(self) -> list[RecordError]:
        rec = self.record
        if not isinstance(rec.get('id'), str) or not rec.get('id'):
            self.err('id', f'required non-empty string, got {rec.get("id")!r}')
        known = set(TASKS) | {s.task for s in self.template_sets.values()}
        if rec.get('task') not in known:
            self.err('task', f'unknown task {rec.get("task")!r}; one of {sorted(known)}')
        self.check_image(rec.get('image'))
        instances = rec.get('instances', [])
        if not isinstance(instances, list):
            self.err('instances', f'must be a list, got {type(instances).__name__}')
            instances = []
        self.instances = instances
        for i, inst in enumerate(instances):
            self.check_instance(inst, f'instances[{i}]')
        self.check_depth(rec.get('depth'))
        self.check_visual_prompts(rec.get('visual_prompts', []))
        if rec.get('meta') is not None and not isinstance(rec.get('meta'), dict):
            self.err('meta', 'must be an object')
        self.check_conversation(rec.get('conversation'))
        return self.errors

    # --- image, instances, depth, visual prompts ---
    def check_image(self, image: Any) -> None:
        if image is None:
            return
        if not isinstance(image, dict):
            self.err('image', 'must be an object {path, width, height} or null')
            return
        msg = _relative_path_error(image.get('path'))
        if msg:
            self.err('image.path', msg)
        for key in ('width', 'height'):
            value = image.get(key)
            if not _is_int(value) or value <= 0:
                self.err(f'image.{key}', f'must be a positive int, got {value!r}')
        if all(_is_int(image.get(k)) and image[k] > 0 for k in ('width', 'height')):
            self.width, self.height = image['width'], image['height']
        if (
            self.data_root is not None
            and not msg
            and not osp.isfile(osp.join(self.data_root, image['path']))
        ):
            self.err('image.path', f'file {osp.join(self.data_root, image["path"])} not found')

    def check_instance(self, inst: Any, path: str) -> None:
        if not isinstance(inst, dict):
            self.err(path, 'an instance must be an object')
            return
        checks = (
            ('bbox', lambda v: check_bbox(v, self.width, self.height)),
            ('mask', lambda v: check_mask(v, self.height, self.width)),
            ('keypoints', check_keypoints),
        )
        for key, check in checks:
            if inst.get(key) is not None:
                self.put(f'{path}.{key}', check(inst[key]))
        if 'category' in inst and not isinstance(inst['category'], str):
            self.err(f'{path}.category', f'must be a string, got {inst["category"]!r}')

    def check_depth(self, depth: Any) -> None:
        if depth is None:
            return
        if not isinstance(depth, dict):
            self.err('depth', 'must be an object {path, scale, format} or null')
            return
        fmt, scale = depth.get('format'), depth.get('scale')
        if fmt not in _DEPTH_EXT:
            self.err('depth.format', f'must be "png16" or "npy", got {fmt!r}')
        if not is_number(scale) or scale <= 0:
            self.err(
                'depth.scale', f'must be a positive number (metres per stored unit), got {scale!r}'
            )
        msg = _relative_path_error(depth.get('path'))
        if msg:
            self.err('depth.path', msg)
        elif fmt in _DEPTH_EXT and not depth['path'].lower().endswith(_DEPTH_EXT[fmt]):
            self.err(
                'depth.path', f'format {fmt} needs a {_DEPTH_EXT[fmt]} file, got {depth["path"]!r}'
            )
        elif self.data_root is not None and fmt in _DEPTH_EXT:
            self.put(
                'depth.path',
                check_depth_file(
                    osp.join(self.data_root, depth['path']), fmt, self.width, self.height
                ),
            )

    def check_visual_prompts(self, prompts: Any) -> None:
        if not isinstance(prompts, list):
            self.err('visual_prompts', 'must be a list')
            self.prompts = []
            return
        self.prompts = prompts
        for i, vp in enumerate(prompts):
            path = f'visual_prompts[{i}]'
            kind = vp.get('type') if isinstance(vp, dict) else None
            if kind not in _PROMPT_TYPES:
                self.err(path, f'type must be one of {list(_PROMPT_TYPES)}, got {kind!r}')
                continue
            self.put(
                f'{path}.{kind}',
                check_visual_prompt_geometry(kind, vp.get(kind), self.width, self.height),
            )
            inst = vp.get('instance')
            if inst is not None and not (_is_int(inst) and 0 <= inst < len(self.instances)):
                self.err(
                    f'{path}.instance',
                    f'must be null or an index into instances '
                    f'(0..{len(self.instances) - 1}), got {inst!r}',
                )

    # --- conversation ---
    def check_conversation(self, conv: Any) -> None:
        if not isinstance(conv, list) or not conv:
            self.err('conversation', 'required non-empty list of turns')
            return
        start = 0
        if isinstance(conv[0], dict) and conv[0].get('role') == 'system':
            if not isinstance(conv[0].get('content'), str):
                self.err('conversation[0].content', 'a system turn needs string content')
            self.count_placeholders(conv[0].get('content'))
            start = 1
        turns = conv[start:]
        if not turns:
            self.err('conversation', 'needs at least one user and one assistant turn')
        for k, turn in enumerate(turns):
            i = k + start
            want = 'user' if k % 2 == 0 else 'assistant'
            role = turn.get('role') if isinstance(turn, dict) else None
            if role != want:
                self.err(
                    f'conversation[{i}].role',
                    f'expected {want!r} (turns alternate, starting with user), got {role!r}',
                )
            elif role == 'user':
                self.check_user(turn, f'conversation[{i}]')
            else:
                self.check_answer(turn.get('answer'), f'conversation[{i}].answer', 0)
        if turns and len(turns) % 2:
            self.err('conversation', 'must end with an assistant turn')
        if self.num_vpt != len(self.prompts):
            self.err(
                'visual_prompts',
                f'{self.num_vpt} {VPT_TOKEN} in the user turns but '
                f'{len(self.prompts)} visual prompts',
            )
        if self.num_image > 1:
            self.err('conversation', f'{IMAGE_TOKEN} appears {self.num_image} times; at most once')
        elif self.num_image and self.record.get('image') is None:
            self.err('conversation', f'{IMAGE_TOKEN} in a record without an image')

    def count_placeholders(self, text: Any) -> None:
        if isinstance(text, str):
            self.num_vpt += text.count(VPT_TOKEN)
            self.num_image += text.count(IMAGE_TOKEN)

    def check_user(self, turn: dict, path: str) -> None:
        has_content, has_template = 'content' in turn, 'template' in turn
        if has_content == has_template:
            self.err(path, 'a user turn has either "content" (text) or "template" (+ "slots")')
            return
        if has_content:
            if not isinstance(turn['content'], str):
                self.err(f'{path}.content', 'must be a string')
            self.count_placeholders(turn['content'])
            return
        slots = turn.get('slots', {})
        if not isinstance(slots, dict) or not all(isinstance(v, str) for v in slots.values()):
            self.err(f'{path}.slots', 'must be an object of string values')
            slots = {}
        for value in slots.values():
            self.count_placeholders(value)
        if not isinstance(turn['template'], str):
            self.err(f'{path}.template', f'must be a template set name, got {turn["template"]!r}')
            return
        if not self.template_sets:
            return  # no template sets available: nothing to check the reference against
        info = self.template_sets.get(turn['template'])
        if info is None:
            self.err(
                f'{path}.template',
                f'unknown template set {turn["template"]!r}; known: {sorted(self.template_sets)}',
            )
            return
        for slot in info.slots:
            if not slots.get(slot):
                self.err(f'{path}.slots.{slot}', f'template set {info.name!r} needs slot {slot!r}')
        if len(info.vpt_counts) > 1:
            self.err(
                f'{path}.template',
                f'templates of {info.name!r} disagree on the number of '
                f'{VPT_TOKEN} ({sorted(info.vpt_counts)})',
            )
        self.num_vpt += max(info.vpt_counts)
        self.num_image += info.max_images

    def check_answer(self, answer: Any, path: str, depth: int) -> None:
        if isinstance(answer, str):
            self.check_text(answer, path)
            return
        if not isinstance(answer, list) or not answer:
            self.err(path, 'must be a string or a non-empty list of segments')
            return
        if depth >= _MAX_NESTING:  # the segments of this list are phrases of level depth + 1
            self.err(path, f'phrases nested deeper than {_MAX_NESTING}')
            return
        for k, seg in enumerate(answer):
            sp = f'{path}[{k}]'
            if isinstance(seg, str):
                self.check_text(seg, sp)
            elif isinstance(seg, dict) and 'phrase' in seg:
                self.check_phrase_group(seg, sp, depth)
            else:
                self.err(sp, 'a segment is a string or {"phrase": ..., "groups": [...]}')

    def check_text(self, text: str, path: str) -> None:
        for token in (IMAGE_TOKEN, VPT_TOKEN, *_TRP_MARKUP):
            if token in text:
                self.err(
                    path,
                    f'answer text contains {token!r}; answers hold structure, the '
                    'TRP builder renders the markup',
                )
                return

    def check_phrase_group(self, seg: dict, path: str, depth: int) -> None:
        phrase = seg['phrase']
        if isinstance(phrase, list):
            self.check_answer(phrase, f'{path}.phrase', depth + 1)
        elif not isinstance(phrase, str) or not phrase.strip():
            self.err(f'{path}.phrase', 'must be a non-empty string or a list of segments')
        else:
            self.check_text(phrase, f'{path}.phrase')
        groups = seg.get('groups')
        if not isinstance(groups, list) or not groups:
            self.err(f'{path}.groups', 'a phrase group needs a non-empty list of groups')
            return
        for g, group in enumerate(groups):
            self.check_group(group, f'{path}.groups[{g}]')

    def check_group(self, group: Any, path: str) -> None:
        if not isinstance(group, dict):
            self.err(path, 'a group is {"units": [...], "n": int, "targets": [...]}')
            return
        units = group.get('units')
        if (
            not isinstance(units, list)
            or not units
            or not all(isinstance(u, str) and u for u in units)
            or len(set(units)) != len(units)
        ):
            self.err(
                f'{path}.units', f'must be a non-empty list of distinct unit names, got {units!r}'
            )
            return
        if self.known_units is not None:
            unknown = [u for u in units if u not in self.known_units]
            if unknown:
                self.err(
                    f'{path}.units', f'unknown unit(s) {unknown}; known: {sorted(self.known_units)}'
                )
        n, targets = group.get('n'), group.get('targets')
        if not _is_int(n) or n < 0:
            self.err(f'{path}.n', f'must be an int >= 0, got {n!r}')
            return
        if not isinstance(targets, list) or len(targets) != n:
            self.err(f'{path}.targets', f'must be a list of n={n} targets, got {targets!r}')
            return
        for t, target in enumerate(targets):
            self.check_target(target, units, f'{path}.targets[{t}]')

    def check_target(self, target: Any, units: list[str], path: str) -> None:
        instance_units = [u for u in units if u not in IMAGE_LEVEL_UNITS]
        if target is None:
            if any(u in UNIT_GEOMETRY for u in instance_units):
                self.err(
                    path,
                    f'null target for instance unit(s) {instance_units}; only '
                    f'image-level units {sorted(IMAGE_LEVEL_UNITS)} take null',
                )
            if 'depth' in units and self.record.get('depth') is None:
                self.err(path, 'a depth target needs the record "depth" field')
            return
        if not _is_int(target) or not 0 <= target < len(self.instances):
            self.err(
                path,
                f'must be an index into instances (0..{len(self.instances) - 1}), got {target!r}',
            )
            return
        if instance_units != list(units):
            self.err(
                path,
                f'image-level unit(s) {sorted(set(units) - set(instance_units))} take a '
                f'null target, got {target}',
            )
        inst = self.instances[target]
        for unit in units:
            key = UNIT_GEOMETRY.get(unit)
            if key and isinstance(inst, dict) and inst.get(key) is None:
                self.err(path, f'unit {unit!r} needs instances[{target}].{key}')


def validate_record(
    record: Any,
    *,
    line: int | None = None,
    data_root: str | None = None,
    template_sets: Mapping[str, TemplateSetInfo] | None = None,
    known_units: Iterable[str] | None = None,
) -> list[RecordError]:
    """Check one record against docs/data_format.md.

    Args:
        record (Any): The parsed JSON value of one line.
        line (int, optional): Its line number, copied into the errors.
        data_root (str, optional): When given, image and depth files must exist under it (depth
            files are also header-checked: 16-bit PNG or 2-D npy of the image size).
        template_sets (Mapping[str, TemplateSetInfo], optional): From :func:`load_template_sets`;
            default: read :data:`TEMPLATE_DIR` now. An empty mapping skips template checks.
        known_units (Iterable[str], optional): When given, group units must be among them.

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
    return _RecordChecker(record, line, data_root, sets, units).run()


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
) -> ValidationReport:
    """Validate every line of a JSONL file, plus id uniqueness within the file.

    Args:
        path (str): The JSONL file.
        data_root (str, optional): See :func:`validate_record`.
        template_sets (Mapping[str, TemplateSetInfo], optional): Default: read once now.
        known_units (Iterable[str], optional): See :func:`validate_record`.
        max_errors (int, optional): Keep at most this many errors (all are still counted).

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


def template_turn(template: str, **slots: str) -> dict:
    """A user turn referring to a template set, e.g. ``template_turn('rec', expr='the dog')``."""
    return {'role': 'user', 'template': template, 'slots': dict(slots)}
