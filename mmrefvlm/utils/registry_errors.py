# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""Actionable "unknown type" errors: list the registered names closest to a typo.

MMEngine's message (``BoxUnitDecodr is not in the mmrefvlm::model registry. Please check ...``)
names neither the registered types nor the likely fix. :func:`registry_hints` wraps config
building (``tools/train.py``, ``tools/test.py``) and re-raises such ``KeyError``\\ s as
:class:`UnregisteredTypeError` with the closest registered names of that kind (``difflib`` over
the mmrefvlm registry, its parents and, for ``scope.Name`` keys, that scope's registry), keeping the
original error as ``__cause__``.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterator
from contextlib import contextmanager

from mmengine.registry import Registry

__all__ = [
    'UnregisteredTypeError',
    'registered_names',
    'close_names',
    'enrich_registry_error',
    'registry_hints',
]

# "<type> is not in the <scope>::<name> registry" (build_from_cfg), "<type> is not in the <name>
# registry" (runners, schedulers) and RefVLM's "'<type>' is not registered in mmrefvlm.<ATTR>".
_PATTERNS = (
    re.compile(
        r"'?(?P<type>[\w.\-]+)'? is not in the (?:(?P<scope>\w+)::)?(?P<name>[\w ]+?) "
        r'registry'
    ),
    re.compile(r"'(?P<type>[\w.\-]+)' is not registered in (?P<scope>\w+)\.(?P<attr>[A-Z_]+)"),
)


class UnregisteredTypeError(KeyError):
    """A config names a type that no registry of its kind knows; the message lists close names.

    Subclasses ``KeyError`` (what MMEngine raises) so existing handlers still catch it.

    Attributes:
        type_name (str): The unknown type, as written in the config.
        registry_name (str): The kind of registry (``model``, ``hook``, ...).
        suggestions (list[str]): Close registered names, best first (may be empty).
    """

    def __init__(
        self, message: str, type_name: str, registry_name: str, suggestions: list[str]
    ) -> None:
        super().__init__(message)
        self.message, self.type_name = message, type_name
        self.registry_name, self.suggestions = registry_name, suggestions

    def __str__(self) -> str:  # KeyError would repr() the message (quotes, escaped newlines)
        return self.message


def _mmrefvlm_registries() -> dict[str, Registry]:
    """Every registry of ``mmrefvlm.registry``, keyed by its name and by its attribute name."""
    from mmrefvlm import registry as mod

    out: dict[str, Registry] = {}
    for attr, reg in vars(mod).items():
        if isinstance(reg, Registry) and reg.scope == mod.SCOPE:
            out[reg.name] = reg
            out[attr] = reg
    return out


def _find_registry(name: str | None = None, attr: str | None = None) -> Registry | None:
    regs = _mmrefvlm_registries()
    if attr is not None:
        return regs.get(attr)
    return regs.get(name or '')


def registered_names(registry: Registry, scope: str | None = None) -> list[str]:
    """Names a key without scope prefix resolves to from ``registry``: its own (after importing
    its ``locations``) and its ancestors'. With ``scope`` (the ``mmdet`` of ``mmdet.X``), the
    names of that scope's registry of the same kind (importing ``<scope>.registry`` if needed)."""
    if scope is not None and scope != registry.scope:
        target = _scope_registry(registry, scope)
        return [] if target is None else sorted(_own_names(target))
    names: set[str] = set()
    reg: Registry | None = registry
    while reg is not None:
        names |= _own_names(reg)
        reg = reg.parent
    return sorted(names)


def _own_names(reg: Registry) -> set[str]:
    try:
        reg.import_from_location()
    except Exception:  # noqa: BLE001 (a broken plugin must not hide the user's real error)
        pass
    return set(reg.module_dict)


def _scope_registry(registry: Registry, scope: str) -> Registry | None:
    root = registry._get_root_registry()
    if scope not in root._children:
        try:
            __import__(f'{scope}.registry')
        except ImportError:
            return None
    return root._children.get(scope)


def close_names(type_name: str, names: list[str], n: int = 5) -> list[str]:
    """Up to ``n`` entries of ``names`` closest to ``type_name`` (case-insensitive ``difflib``)."""
    lower: dict[str, str] = {}
    for name in names:
        lower.setdefault(name.lower(), name)
    hits = difflib.get_close_matches(type_name.lower(), list(lower), n=n, cutoff=0.6)
    return [lower[h] for h in hits]


def _parse(message: str) -> tuple[str, Registry | None, str] | None:
    for pat in _PATTERNS:
        m = pat.search(message)
        if m is None:
            continue
        groups = m.groupdict()
        if groups.get('attr'):
            reg = _find_registry(attr=groups['attr'])
        else:
            reg = _find_registry(name=groups['name'])
        label = groups.get('name') or groups.get('attr')
        assert label is not None  # every pattern captures a non-empty name or attr
        kind = reg.name if reg is not None else label
        return groups['type'], reg, kind
    return None


def enrich_registry_error(err: BaseException) -> UnregisteredTypeError | None:
    """An :class:`UnregisteredTypeError` for a "not in the registry" ``KeyError``, else None."""
    if not isinstance(err, KeyError) or isinstance(err, UnregisteredTypeError):
        return None
    message = str(err.args[0]) if err.args else ''
    parsed = _parse(message)
    if parsed is None:
        return None
    type_name, reg, kind = parsed
    scope, _, short = type_name.rpartition('.')
    names = registered_names(reg, scope or None) if reg is not None else []
    hints = close_names(short, names)
    if scope:
        hints = [f'{scope}.{h}' for h in hints]
    where = (
        f'the {kind!r} registries ({reg.scope} and its parents)'
        if reg is not None
        else f'the {kind!r} registry'
    )
    text = f'{type_name!r} is not a registered type in {where}. '
    text += (
        f'Did you mean {", ".join(repr(h) for h in hints)}?'
        if hints
        else f'No registered name is close ({len(names)} names known).'
    )
    text += (
        ' Check the spelling in the config, or that the module defining it is imported '
        '(custom_imports).\nOriginal error: ' + message
    )
    return UnregisteredTypeError(text, type_name, kind, hints)


@contextmanager
def registry_hints() -> Iterator[None]:
    """Re-raise "not in the registry" ``KeyError``\\ s from the block with close registered names.

    Example:
        >>> with registry_hints():
        ...     runner = build_runner(cfg)
        ...     runner.train()
    """
    try:
        yield
    except KeyError as err:
        better = enrich_registry_error(err)
        if better is None:
            raise
        raise better from err
