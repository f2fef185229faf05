# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""``RecordChecker``: the rules of docs/data_format.md for one record (behind ``validate_record``).

Every per-field rule that the data pipeline also needs is a shared function (``geometry.check_*``,
``files``, ``conversation_checks``): the checker and the pipeline call the same one, so a record
the validator passes loads, and the pipeline refuses what the validator refuses.
"""

from __future__ import annotations

import os.path as osp
from collections.abc import Iterable, Mapping
from typing import Any, TypeGuard

from .conversation_checks import (
    answer_banned_strings,
    check_conversation,
    check_text,
    user_banned_strings,
)
from .files import (
    DEFAULT_MAX_PIXELS,
    DEPTH_FORMATS,
    check_depth_file,
    check_depth_spec,
    check_image_file,
    record_path_error,
)
from .geometry import check_bbox, check_keypoints, check_mask, check_visual_prompt_geometry
from .record_schema import (
    IMAGE_LEVEL_UNITS,
    IMAGE_TOKEN,
    MAX_NESTING,
    PROMPT_TYPES,
    REFERENCE_TASKS,
    REFERENCE_TYPES,
    TASKS,
    UNIT_GEOMETRY,
    VPT_TOKEN,
    RecordError,
    TemplateSetInfo,
)

__all__ = ['RecordChecker']


def _is_int(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


class RecordChecker:
    """Checks one record; collects errors in ``self.errors`` (one instance per record).

    Args:
        record (Mapping): The record.
        line (int, optional): Its line in the JSONL file.
        data_root (str, optional): Check files (existence, headers) under this root.
        template_sets (Mapping[str, TemplateSetInfo]): Template sets; empty: not checked.
        known_units (frozenset[str], optional): Allowed unit names.
        allow_outside_data_root (bool): Accept paths outside the data root.
        allow_open_turn (bool): Accept a final user turn (predict-mode records).
        special_tokens (Iterable[str]): More special-token strings text must not contain.
        max_pixels (int): Pixel limit of image and depth files.
    """

    def __init__(
        self,
        record: Mapping,
        line: int | None,
        data_root: str | None,
        template_sets: Mapping[str, TemplateSetInfo],
        known_units: frozenset[str] | None,
        *,
        allow_outside_data_root: bool = False,
        allow_open_turn: bool = False,
        special_tokens: Iterable[str] = (),
        max_pixels: int = DEFAULT_MAX_PIXELS,
    ):
        self.record, self.line, self.data_root = record, line, data_root
        self.template_sets, self.known_units = template_sets, known_units
        self.allow_outside, self.allow_open_turn = allow_outside_data_root, allow_open_turn
        self.answer_banned = answer_banned_strings(special_tokens)
        self.user_banned = user_banned_strings(special_tokens)
        self.max_pixels = max_pixels
        rid = record.get('id')
        self.rid = rid if isinstance(rid, str) else None
        self.errors: list[RecordError] = []
        self.width = self.height = None
        self.num_vpt = self.num_image = 0
        self.instances: list = []
        self.prompts: list = []

    def err(self, path: str, message: str) -> None:
        self.errors.append(RecordError(self.rid, self.line, path, message))

    def put(self, path: str, message: str | None) -> None:
        if message:
            self.err(path, message)

    def run(self) -> list[RecordError]:
        rec = self.record
        if not isinstance(rec.get('id'), str) or not rec.get('id'):
            self.err('id', f'required non-empty string, got {rec.get("id")!r}')
        known = set(TASKS) | set(REFERENCE_TASKS) | {s.task for s in self.template_sets.values()}
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
        self.check_references(rec.get('references', []))
        if rec.get('meta') is not None and not isinstance(rec.get('meta'), dict):
            self.err('meta', 'must be an object')
        self.check_conversation(rec.get('conversation'))
        return self.errors

    # --- files -------------------------------------------------------------------------------
    def _path(self, path: Any, field: str) -> str | None:
        """The file to check under the data root (None: refused, or no data root)."""
        msg = record_path_error(path, self.data_root, allow_outside=self.allow_outside)
        if msg:
            self.err(field, msg)
            return None
        if self.data_root is None:
            return None
        return path if osp.isabs(path) else osp.join(self.data_root, path)

    def check_image(self, image: Any) -> None:
        if image is None:
            return
        if not isinstance(image, dict):
            self.err('image', 'must be an object {path, width, height} or null')
            return
        for key in ('width', 'height'):
            value = image.get(key)
            if not _is_int(value) or value <= 0:
                self.err(f'image.{key}', f'must be a positive int, got {value!r}')
        if all(_is_int(image.get(k)) and image[k] > 0 for k in ('width', 'height')):
            self.width, self.height = image['width'], image['height']
        full = self._path(image.get('path'), 'image.path')
        if full is not None:
            self.put(
                'image.path',
                check_image_file(
                    full, image.get('width'), image.get('height'), max_pixels=self.max_pixels
                ),
            )

    def check_depth(self, depth: Any) -> None:
        if depth is None:
            return
        problems = check_depth_spec(depth)
        for field, message in problems:
            self.err(field, message)
        if not isinstance(depth, dict) or any(f == 'depth.path' for f, _ in problems):
            return
        full = self._path(depth['path'], 'depth.path')
        if full is not None and depth.get('format') in DEPTH_FORMATS and not problems:
            self.put(
                'depth.path',
                check_depth_file(
                    full, depth['format'], self.width, self.height, max_pixels=self.max_pixels
                ),
            )

    # --- instances, visual prompts -------------------------------------------------------------
    def check_instance(self, inst: Any, path: str) -> None:
        if not isinstance(inst, dict):
            self.err(path, 'an instance must be an object')
            return
        checks = (
            ('bbox', lambda v: check_bbox(v, self.width, self.height)),
            ('mask', lambda v: check_mask(v, self.height, self.width)),
            ('keypoints', lambda v: check_keypoints(v, self.width, self.height)),
        )
        for key, check in checks:
            if inst.get(key) is not None:
                self.put(f'{path}.{key}', check(inst[key]))
        if 'category' in inst and not isinstance(inst['category'], str):
            self.err(f'{path}.category', f'must be a string, got {inst["category"]!r}')

    def check_visual_prompts(self, prompts: Any) -> None:
        if not isinstance(prompts, list):
            self.err('visual_prompts', 'must be a list')
            self.prompts = []
            return
        self.prompts = prompts
        for i, vp in enumerate(prompts):
            path = f'visual_prompts[{i}]'
            kind = vp.get('type') if isinstance(vp, dict) else None
            if kind not in PROMPT_TYPES:
                self.err(path, f'type must be one of {list(PROMPT_TYPES)}, got {kind!r}')
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

    def check_references(self, refs: Any) -> None:
        if not isinstance(refs, list):
            self.err('references', 'must be a list')
            return
        for i, ref in enumerate(refs):
            path = f'references[{i}]'
            kind = ref.get('type') if isinstance(ref, dict) else None
            if kind not in REFERENCE_TYPES:
                self.err(path, f'type must be one of {list(REFERENCE_TYPES)}, got {kind!r}')
                continue
            file = self._path(ref.get('path'), f'{path}.path')
            if file is not None and not osp.isfile(file):
                self.err(f'{path}.path', f'file {file} not found')
            if kind == 'image':
                w, h = ref.get('width'), ref.get('height')
                if not (_is_int(w) and _is_int(h) and w > 0 and h > 0):
                    self.err(path, f'an image reference needs positive width/height, got {w}, {h}')
                elif ref.get('box') is not None:
                    self.put(f'{path}.box', check_bbox(ref['box'], w, h))
            inst = ref.get('instance')
            if inst is not None and not (_is_int(inst) and 0 <= inst < len(self.instances)):
                self.err(
                    f'{path}.instance', f'must be null or an index into instances, got {inst!r}'
                )

    # --- conversation --------------------------------------------------------------------------
    def check_conversation(self, conv: Any) -> None:
        structure = check_conversation(conv, allow_open_turn=self.allow_open_turn)
        for field, message in structure:
            self.err(field, message)
        if not isinstance(conv, list) or not conv:
            return
        bad = {f.rsplit('.', 1)[0] for f, _ in structure}
        for i, turn in enumerate(conv):
            path = f'conversation[{i}]'
            if not isinstance(turn, dict) or path in bad or f'{path}.role' in bad:
                continue
            role = turn.get('role')
            if role in ('system', 'user'):
                self.check_user(turn, path)
            elif role == 'assistant':
                self.check_answer(turn.get('answer'), f'{path}.answer', 0)
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

    def count_placeholders(self, text: Any, path: str) -> None:
        if isinstance(text, str):
            self.num_vpt += text.count(VPT_TOKEN)
            self.num_image += text.count(IMAGE_TOKEN)
            self.put(path, check_text(text, self.user_banned, where='user'))

    def check_user(self, turn: dict, path: str) -> None:
        """Placeholders, special strings and the template reference of a user / system turn
        (its form was checked by ``check_conversation``)."""
        if 'content' in turn:
            self.count_placeholders(turn['content'], f'{path}.content')
            return
        slots = turn.get('slots', {})
        slots = slots if isinstance(slots, dict) else {}
        for key, value in slots.items():
            self.count_placeholders(value, f'{path}.slots.{key}')
        if not isinstance(turn.get('template'), str) or not self.template_sets:
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
            self.put(path, check_text(answer, self.answer_banned))
            return
        if not isinstance(answer, list) or not answer:
            self.err(path, 'must be a string or a non-empty list of segments')
            return
        if depth >= MAX_NESTING:  # the segments of this list are phrases of level depth + 1
            self.err(path, f'phrases nested deeper than {MAX_NESTING}')
            return
        for k, seg in enumerate(answer):
            sp = f'{path}[{k}]'
            if isinstance(seg, str):
                self.put(sp, check_text(seg, self.answer_banned))
            elif isinstance(seg, dict) and 'phrase' in seg:
                self.check_phrase_group(seg, sp, depth)
            else:
                self.err(sp, 'a segment is a string or {"phrase": ..., "groups": [...]}')

    def check_phrase_group(self, seg: dict, path: str, depth: int) -> None:
        phrase = seg['phrase']
        if isinstance(phrase, list):
            self.check_answer(phrase, f'{path}.phrase', depth + 1)
        elif not isinstance(phrase, str) or not phrase.strip():
            self.err(f'{path}.phrase', 'must be a non-empty string or a list of segments')
        else:
            self.put(f'{path}.phrase', check_text(phrase, self.answer_banned))
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
