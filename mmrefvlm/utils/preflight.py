# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""Preflight: check every external asset a config names before anything heavy is built.

The config is walked, not a list of the paper's files: every ``name_or_path`` (HF models), every
tokenizer ``source``, ``checkpoint`` / ``load_from`` / ``resume`` file, and every dataset's
``data_root`` / ``ann_file`` in the sections a run uses. All missing items are reported together in
one :class:`PreflightError`, each with the command or doc section that provides it
(:mod:`mmrefvlm.utils.paper_assets` maps known paths to those hints).

A hub id (``lmsys/vicuna-7b-v1.5``) is accepted as a ``name_or_path`` / tokenizer source: online it
is fetched through the HF cache by transformers; offline (``HF_HUB_OFFLINE=1`` or
``TRANSFORMERS_OFFLINE=1``) it is accepted only when it is already in the HF cache.
"""

from __future__ import annotations

import fnmatch
import glob
import os
import os.path as osp
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .paper_assets import PATH_HINTS, PREPARE_DOC, find_weight

__all__ = [
    'MissingAsset',
    'PreflightError',
    'check_assets',
    'has_hf_weights',
    'run_preflight',
    'SECTIONS',
]

#: Config sections each kind of run reads.
SECTIONS: dict[str, tuple[str, ...]] = {
    'train': ('model', 'train_dataloader', 'val_dataloader', 'custom_hooks', 'load_from', 'resume'),
    'test': ('model', 'test_dataloader'),
}
_FILE_KEYS = ('checkpoint', 'load_from', 'resume', 'pretrained')
#: The weight files ``from_pretrained`` reads from a folder (``*.gguf`` only with ``gguf_file``).
HF_WEIGHT_PATTERNS = ('*.safetensors', '*.bin')
_TOKENIZER_FILES = ('tokenizer.json', 'tokenizer.model', 'tokenizer_config.json', 'vocab.json')
_LOCAL_PREFIXES = ('.', '/', '~', 'checkpoints/', 'work_dirs/', 'data/')
_HUB_ID = re.compile(r'[A-Za-z0-9][\w.-]*/[\w.-]+')


@dataclass
class MissingAsset:
    """One missing (or unusable) asset.

    Args:
        value (str): The path or hub id as the config names it.
        reason (str): What is wrong (``no such folder``, ``no config.json in it``...).
        hint (str): The command or doc section that provides it.
        keys (list[str]): The config keys naming it (e.g. ``model.llm.name_or_path``).
    """

    value: str
    reason: str
    hint: str
    keys: list[str] = field(default_factory=list)

    def format(self) -> str:
        """Two lines: what and where in the config, then how to get it."""
        # the model's own key reads better than the first pipeline that repeats it
        first = sorted(self.keys, key=lambda k: (not k.endswith('name_or_path'), k))[0]
        keys = first + (f' (+{len(self.keys) - 1} more)' if len(self.keys) > 1 else '')
        return f'  - {self.value!r} ({keys}): {self.reason}\n      get it: {self.hint}'


class PreflightError(RuntimeError):
    """Assets named by the config are missing; the message lists all of them.

    Args:
        missing (list[MissingAsset]): The missing assets.
        config (str): The config's name, for the message.
    """

    def __init__(self, missing: list[MissingAsset], config: str = 'the config') -> None:
        self.missing = missing
        head = (
            f'preflight: {len(missing)} asset(s) named by {config} are missing; nothing was built.'
        )
        tail = (
            f'See {PREPARE_DOC} for the whole path from nothing to a runnable stage; '
            '--skip-preflight starts anyway.'
        )
        super().__init__('\n'.join([head, *(m.format() for m in missing), tail]))


def hub_offline() -> bool:
    """Whether the HF hub must not be contacted (``HF_HUB_OFFLINE`` / ``TRANSFORMERS_OFFLINE``)."""
    flags = (os.environ.get(k, '') for k in ('HF_HUB_OFFLINE', 'TRANSFORMERS_OFFLINE'))
    return any(v.strip().upper() in ('1', 'ON', 'YES', 'TRUE') for v in flags)


def in_hf_cache(repo_id: str, filename: str = 'config.json') -> bool:
    """Whether ``filename`` of hub repo ``repo_id`` is in the local HF cache (no network)."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # pragma: no cover - transformers requires huggingface_hub
        return False
    try:
        return isinstance(try_to_load_from_cache(repo_id, filename), str)
    except ValueError:  # not a valid repo id
        return False


def _hint(value: str, hub: bool = False, config: str = 'CONFIG') -> str:
    asset = find_weight(value)
    if hub:
        local = f'; or a local copy: {asset.hint()}' if asset is not None else ''
        return f'run once online (unset HF_HUB_OFFLINE) or `hf download {value}`{local}'
    if asset is not None:
        return asset.hint(osp.dirname(value.rstrip('/')) or '.')
    norm = value.replace('\\', '/')
    for pattern, hint in PATH_HINTS:
        if fnmatch.fnmatch(norm, pattern):
            return hint.format(config=config)
    return f'fix the path in the config or with --cfg-options ({PREPARE_DOC})'


def _is_hub_id(value: str) -> bool:
    asset = find_weight(value)
    if asset is not None and asset.repo_id == value:
        return True
    return (
        bool(_HUB_ID.fullmatch(value))
        and not value.startswith(_LOCAL_PREFIXES)
        and not osp.isdir(value.split('/')[0])
    )


# --------------------------------------------------------------------------- the config walk
def _walk(node: Any, key: str) -> Iterator[tuple[str, Mapping]]:
    """Every mapping in ``node`` with its dotted config key."""
    if isinstance(node, Mapping):
        yield key, node
        for k, v in node.items():
            yield from _walk(v, f'{key}.{k}' if key else str(k))
    elif isinstance(node, (list, tuple)):
        for i, v in enumerate(node):
            yield from _walk(v, f'{key}[{i}]')


def _items(section: str, node: Any) -> Iterator[tuple[str, str, str, Mapping]]:
    """``(kind, key, value, owner)`` for every asset path in one config section."""
    if isinstance(node, str) and section in _FILE_KEYS:  # top-level load_from / resume
        yield 'file', section, node, {}
        return
    for key, d in _walk(node, section):
        for k, v in d.items():
            if not isinstance(v, str) or not v:
                continue
            if k == 'name_or_path':
                yield 'model', f'{key}.{k}', v, d
            elif k == 'source' and key.split('.')[-1] == 'tokenizer':
                yield 'tokenizer', f'{key}.{k}', v, d
            elif k in _FILE_KEYS:
                yield 'file', f'{key}.{k}', v, d
        if isinstance(d.get('data_root'), str) or isinstance(d.get('ann_file'), str):
            yield 'dataset', key, '', d


def has_hf_weights(folder: str, gguf: bool = False) -> bool:
    """Whether ``folder`` holds weight files that ``from_pretrained`` loads.

    Args:
        folder (str): A model folder.
        gguf (bool): The model is read from a GGUF file (``gguf_file``): ``*.gguf`` counts too.

    Returns:
        bool: True when a ``*.safetensors`` or ``*.bin`` file (or ``*.gguf``) is in it. A
        ``*.pt`` / ``*.pth`` file alone does not count: ``from_pretrained`` would not read it.
    """
    return any(glob.glob(osp.join(folder, p)) for p in _weight_patterns(gguf))


def _weight_patterns(gguf: bool) -> tuple[str, ...]:
    return HF_WEIGHT_PATTERNS + (('*.gguf',) if gguf else ())


def _check_model(kind: str, value: str, owner: Mapping) -> str | None:
    """Why a model / tokenizer folder is unusable (None: fine)."""
    if kind == 'tokenizer':
        from mmrefvlm.tokenization.builder import BUILTIN_SOURCES

        if value in BUILTIN_SOURCES:
            return None
    if not osp.exists(value):
        if _is_hub_id(value):
            if not hub_offline():
                return None  # transformers fetches it through the HF cache
            probe = 'tokenizer_config.json' if kind == 'tokenizer' else 'config.json'
            if in_hf_cache(value, probe):
                return None
            return 'a hub id, but the hub is offline (HF_HUB_OFFLINE) and it is not in the HF cache'
        return 'no such folder'
    if not osp.isdir(value):
        return 'not a folder'
    if kind == 'tokenizer':
        found = any(osp.isfile(osp.join(value, f)) for f in _TOKENIZER_FILES)
        return None if found else f'no tokenizer files ({", ".join(_TOKENIZER_FILES)}) in it'
    if not osp.isfile(osp.join(value, 'config.json')):
        return 'no config.json in it (incomplete download?)'
    gguf = bool(owner.get('gguf_file'))
    if owner.get('load_weights', True) and not has_hf_weights(value, gguf):
        return f'no weight files ({", ".join(_weight_patterns(gguf))}) in it'
    return None


def _check_dataset(key: str, owner: Mapping) -> Iterator[tuple[str, str, str]]:
    """``(config key, path, reason)`` for a dataset's missing data root / annotation file."""
    root = owner['data_root'] if isinstance(owner.get('data_root'), str) else ''
    if root and not osp.isdir(root):
        yield f'{key}.data_root', root, 'no such folder'
        return
    ann = owner.get('ann_file')
    if isinstance(ann, str) and ann:
        path = ann if osp.isabs(ann) else osp.join(root, ann)
        if not osp.isfile(path):
            yield f'{key}.ann_file', path, 'no such file'


def check_assets(
    cfg: Mapping, sections: Sequence[str], config_name: str = 'CONFIG'
) -> list[MissingAsset]:
    """Every missing asset the given config sections name, each listed once.

    Args:
        cfg (Mapping): The (loaded) config.
        sections (Sequence[str]): Top-level keys to check (see :data:`SECTIONS`).
        config_name (str): The config's path, for hints that name it.

    Returns:
        list[MissingAsset]: In config order; a path named by several keys appears once with all
        of them. A missing ``data_root`` is reported once, not once per annotation file.
    """
    found: dict[str, MissingAsset] = {}

    def add(key: str, value: str, reason: str) -> None:
        if value in found:
            found[value].keys.append(key)
        else:
            hub = reason.startswith('a hub id')
            found[value] = MissingAsset(value, reason, _hint(value, hub, config_name), [key])

    for section in sections:
        node = cfg.get(section)
        if node is None or node is False:
            continue
        for kind, key, value, owner in _items(section, node):
            if kind == 'dataset':
                for k, path, reason in _check_dataset(key, owner):
                    add(k, path, reason)
            elif kind == 'file':
                if '://' not in value and not osp.exists(value):
                    add(key, value, 'no such file')
            else:
                why = _check_model(kind, value, owner)
                if why:
                    add(key, value, why)
    return list(found.values())


def run_preflight(cfg: Mapping, mode: str = 'train', config_name: str | None = None) -> None:
    """Check the assets a ``train`` or ``test`` run of ``cfg`` needs.

    Args:
        cfg (Mapping): The loaded config (after ``--cfg-options`` and ``--resume``).
        mode (str): ``'train'`` or ``'test'``.
        config_name (str, optional): For the message (default: ``cfg.filename``).

    Raises:
        ValueError: Unknown ``mode``.
        PreflightError: Something is missing; the message lists everything.
    """
    if mode not in SECTIONS:
        raise ValueError(f'mode must be one of {sorted(SECTIONS)}, got {mode!r}')
    sections = list(SECTIONS[mode])
    if mode == 'train' and (cfg.get('val_cfg') is None or cfg.get('val_evaluator') is None):
        sections.remove('val_dataloader')
    name = config_name or getattr(cfg, 'filename', None) or 'CONFIG'
    missing = check_assets(cfg, sections, name)
    if missing:
        raise PreflightError(missing, name)
