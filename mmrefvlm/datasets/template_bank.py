# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""Prompt template sets: per-task system commands and user-turn wordings stored as JSON data files.

A template set is one file ``<name>.json`` in a template folder (default
``mmrefvlm/datasets/templates/``)::

    {"task": "rec", "slots": ["expr"],
     "system": "Task: referring expression comprehension. ...",
     "templates": ["Where is <expr>? Give its box.", "<image>\\nLocate <expr>.", ...]}

Rules checked at load time (a broken file raises ``ValueError`` naming the file and template):

* ``task`` equals the file name without ``.json``; ``slots`` are distinct lower-case names;
* every template uses every declared slot exactly once, and no other ``<name>`` tag except
  ``<image>``, which may appear at most once;
* every template has the same number of ``[VPT]`` placeholders: one for the visual-prompt sets
  (``reg``, ``ig_box``, ``ig_mask``, ``ig_keypoint``), none for the others, unless the file sets
  ``"num_vpt"`` explicitly (for plugin sets);
* the system command is a non-empty string without slots or placeholders.

Records reference a set by name (``{"role": "user", "template": "rec", "slots": {...}}``, see
``docs/data_format.md``); the pipeline picks the wording with :meth:`TemplateBank.sample_index`, a
pure function of the dataset seed and the sample index.
"""

from __future__ import annotations

import json
import os.path as osp
import re
from collections.abc import Mapping
from glob import glob

import numpy as np

DEFAULT_TEMPLATE_DIR = osp.join(osp.dirname(osp.abspath(__file__)), 'templates')
IMAGE_PLACEHOLDER = '<image>'
VPT_PLACEHOLDER = '[VPT]'
#: ``[VPT]`` count of the built-in visual-prompt sets (all other sets default to 0).
DEFAULT_NUM_VPT: dict[str, int] = {'reg': 1, 'ig_box': 1, 'ig_mask': 1, 'ig_keypoint': 1}

_TAG_RE = re.compile(r'<([^<>\s]+)>')
_SLOT_NAME_RE = re.compile(r'^[a-z][a-z0-9_]*$')


class TemplateSet:
    """One validated template set (immutable after construction).

    Args:
        name (str): Set name (the ``task`` field).
        slots (tuple[str, ...]): Slot names every template uses once.
        system (str): System command of the task.
        templates (tuple[str, ...]): User-turn wordings.
        num_vpt (int): Number of ``[VPT]`` placeholders in every template.
    """

    __slots__ = ('name', 'slots', 'system', 'templates', 'num_vpt')

    def __init__(
        self,
        name: str,
        slots: tuple[str, ...],
        system: str,
        templates: tuple[str, ...],
        num_vpt: int,
    ) -> None:
        self.name = name
        self.slots = slots
        self.system = system
        self.templates = templates
        self.num_vpt = num_vpt

    def __len__(self) -> int:
        return len(self.templates)

    def __repr__(self) -> str:
        return (
            f'TemplateSet(name={self.name!r}, slots={self.slots}, '
            f'num_templates={len(self)}, num_vpt={self.num_vpt})'
        )


def _check_template(text: str, slots: tuple[str, ...], num_vpt: int, where: str) -> None:
    """Raise ``ValueError`` if ``text`` breaks a template rule (see module docstring)."""
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f'{where}: a template must be a non-empty string, got {text!r}')
    tags = _TAG_RE.findall(text)
    image_count = tags.count('image')
    if image_count > 1:
        raise ValueError(f'{where}: {IMAGE_PLACEHOLDER} appears {image_count} times in {text!r}')
    for tag in tags:
        if tag != 'image' and tag not in slots:
            raise ValueError(f'{where}: undeclared tag <{tag}> in {text!r} (slots: {list(slots)})')
    for slot in slots:
        count = tags.count(slot)
        if count != 1:
            raise ValueError(
                f'{where}: slot <{slot}> must appear exactly once, found {count} times in {text!r}'
            )
    vpt_count = text.count(VPT_PLACEHOLDER)
    if vpt_count != num_vpt:
        raise ValueError(
            f'{where}: expected {num_vpt} {VPT_PLACEHOLDER}, found {vpt_count} in {text!r}'
        )


def parse_template_set(
    data: Mapping, name: str | None = None, where: str = '<dict>'
) -> TemplateSet:
    """Validate the JSON content of one template file and build a :class:`TemplateSet`.

    Args:
        data (Mapping): Parsed JSON (``task``, ``slots``, ``system``, ``templates``, optional
            ``num_vpt``).
        name (str, optional): Expected set name (the file stem). Default: ``data['task']``.
        where (str): Location used in error messages (usually the file path).

    Returns:
        TemplateSet: The validated set.
    """
    if not isinstance(data, Mapping):
        raise ValueError(f'{where}: a template file must hold a JSON object, got {type(data)}')
    missing = {'task', 'slots', 'system', 'templates'} - set(data)
    if missing:
        raise ValueError(f'{where}: missing keys {sorted(missing)}')
    task = data['task']
    if not isinstance(task, str) or (name is not None and task != name):
        raise ValueError(f'{where}: "task" must equal the file name {name!r}, got {task!r}')
    slots = data['slots']
    if (
        not isinstance(slots, list)
        or len(set(slots)) != len(slots)
        or not all(isinstance(s, str) and _SLOT_NAME_RE.match(s) and s != 'image' for s in slots)
    ):
        raise ValueError(f'{where}: "slots" must be distinct lower-case names, got {slots!r}')
    system = data['system']
    if (
        not isinstance(system, str)
        or not system.strip()
        or _TAG_RE.search(system)
        or VPT_PLACEHOLDER in system
    ):
        raise ValueError(
            f'{where}: "system" must be a non-empty string without tags or '
            f'placeholders, got {system!r}'
        )
    num_vpt = data.get('num_vpt', DEFAULT_NUM_VPT.get(task, 0))
    if not isinstance(num_vpt, int) or isinstance(num_vpt, bool) or num_vpt < 0:
        raise ValueError(f'{where}: "num_vpt" must be a non-negative int, got {num_vpt!r}')
    templates = data['templates']
    if not isinstance(templates, list) or not templates:
        raise ValueError(f'{where}: "templates" must be a non-empty list, got {templates!r}')
    if len(set(templates)) != len(templates):
        raise ValueError(f'{where}: duplicate templates')
    for i, text in enumerate(templates):
        _check_template(text, tuple(slots), num_vpt, f'{where} templates[{i}]')
    return TemplateSet(task, tuple(slots), system, tuple(templates), num_vpt)


class TemplateBank:
    """All template sets of a folder, validated, with deterministic sampling and rendering.

    Args:
        template_dir (str, optional): Folder holding ``<name>.json`` files. Default: the built-in
            ``mmrefvlm/datasets/templates/``.
        extra_dirs (list[str], optional): More folders (e.g. a plugin's); a set defined twice is an
            error.

    Example:
        >>> bank = TemplateBank()
        >>> idx = bank.sample_index('rec', seed=0, sample_idx=12)
        >>> bank.render('rec', {'expr': 'the red circle'}, index=idx)  # doctest: +SKIP
        'Find the red circle in the image.'
    """

    def __init__(
        self, template_dir: str | None = None, *, extra_dirs: list[str] | tuple[str, ...] = ()
    ) -> None:
        self._sets: dict[str, TemplateSet] = {}
        for folder in [template_dir or DEFAULT_TEMPLATE_DIR, *extra_dirs]:
            if not osp.isdir(folder):
                raise ValueError(f'template folder {folder!r} does not exist')
            for path in sorted(glob(osp.join(folder, '*.json'))):
                name = osp.splitext(osp.basename(path))[0]
                if name in self._sets:
                    raise ValueError(f'template set {name!r} defined twice (again in {path})')
                with open(path, encoding='utf-8') as f:
                    try:
                        data = json.load(f)
                    except json.JSONDecodeError as err:
                        raise ValueError(f'{path}: invalid JSON ({err})') from err
                self._sets[name] = parse_template_set(data, name=name, where=path)

    # ----------------------------------------------------------------------------------------
    @property
    def names(self) -> list[str]:
        """Sorted names of all loaded sets."""
        return sorted(self._sets)

    def __contains__(self, set_name: object) -> bool:
        return set_name in self._sets

    def __len__(self) -> int:
        return len(self._sets)

    def get(self, set_name: str) -> TemplateSet:
        """Return the :class:`TemplateSet` ``set_name`` (``ValueError`` if unknown)."""
        try:
            return self._sets[set_name]
        except (KeyError, TypeError):
            raise ValueError(f'unknown template set {set_name!r}; known: {self.names}') from None

    def system(self, set_name: str) -> str:
        """System command of the set's task."""
        return self.get(set_name).system

    def slots(self, set_name: str) -> tuple[str, ...]:
        """Slot names the set's templates need."""
        return self.get(set_name).slots

    def num_vpt(self, set_name: str) -> int:
        """Number of ``[VPT]`` placeholders in each template of the set."""
        return self.get(set_name).num_vpt

    # ----------------------------------------------------------------------------------------
    def sample_index(self, set_name: str, seed: int, sample_idx: int) -> int:
        """Deterministic template choice for one sample.

        The index depends only on ``(seed, sample_idx)`` and the number of templates, through
        ``numpy.random.default_rng([seed, sample_idx])``; it does not depend on call order.

        Args:
            set_name (str): Template set.
            seed (int): Dataset seed, ``>= 0``.
            sample_idx (int): Sample index in the dataset, ``>= 0``.

        Returns:
            int: Index into the set's templates.
        """
        num = len(self.get(set_name))
        for label, value in (('seed', seed), ('sample_idx', sample_idx)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
                raise ValueError(f'{label} must be a non-negative int, got {value!r}')
        return int(np.random.default_rng([int(seed), int(sample_idx)]).integers(num))

    def render(
        self,
        set_name: str,
        slots: Mapping[str, str] | None = None,
        rng: np.random.Generator | None = None,
        *,
        index: int | None = None,
    ) -> str:
        """Fill one template of the set.

        Args:
            set_name (str): Template set.
            slots (Mapping[str, str], optional): Slot values; every slot of the set is required,
                extra keys are ignored.
            rng (numpy.random.Generator, optional): Picks the template when ``index`` is None.
            index (int, optional): Template index (e.g. from :meth:`sample_index`). When both
                ``rng`` and ``index`` are None the first template is used.

        Returns:
            str: The user-turn text (may contain ``<image>`` and ``[VPT]``).
        """
        tset = self.get(set_name)
        slots = dict(slots or {})
        missing = [s for s in tset.slots if s not in slots]
        if missing:
            raise ValueError(
                f'template set {set_name!r} needs slots {missing}, got {sorted(slots)}'
            )
        for key in tset.slots:
            if not isinstance(slots[key], str):
                raise TypeError(f'slot {key!r} must be a str, got {type(slots[key])}')
        if index is None:
            index = int(rng.integers(len(tset))) if rng is not None else 0
        if not 0 <= index < len(tset):
            raise ValueError(
                f'template index {index} out of range for {set_name!r} ({len(tset)} templates)'
            )
        # One pass, so a slot value that happens to contain "<expr>" is not substituted again.
        return _TAG_RE.sub(
            lambda m: slots[m.group(1)] if m.group(1) in tset.slots else m.group(0),
            tset.templates[index],
        )
