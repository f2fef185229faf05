# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""Make mmdet's pure-Python parts importable with ``mmcv-lite`` (no compiled ops).

``mmcv-lite`` ships ``mmcv.ops`` as Python files but not the compiled extension ``mmcv._ext``. mmdet
imports ``mmcv.ops`` at module level almost everywhere (masks, boxes, layers, metrics), so without
the extension nothing but ``mmdet.registry`` imports. :func:`install_mmcv_ops_guard` registers a
stand-in ``mmcv._ext`` module whose attributes are functions that raise
:class:`MMCVOpsUnavailableError` naming the missing op. Everything mmrefvlm uses from mmdet
(structures, metrics, assigners, losses, DETR layers) is pure PyTorch and never calls those
functions; an op that *is* called (``nms``, ``roi_align``...) fails loudly instead of silently.

When a real ``mmcv._ext`` exists (full mmcv built with ops), the guard does nothing.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import sys
import types

GUARD_MODULE_NAME = 'mmcv._ext'


class MMCVOpsUnavailableError(NotImplementedError):
    """Raised when code calls a compiled mmcv op that ``mmcv-lite`` does not provide."""


class _MissingOpsModule(types.ModuleType):
    """Module stand-in for ``mmcv._ext``: every public attribute is a raising function."""

    is_mmrefvlm_guard = True

    def __getattr__(self, name: str):
        # Dunder lookups (``__path__``, ``__spec__`` ...) must fail normally so that import
        # machinery and ``hasattr`` probes behave as for a plain module.
        if name.startswith('__'):
            raise AttributeError(name)

        def _missing(*args, **kwargs):
            raise MMCVOpsUnavailableError(
                f'mmcv op `{name}` is a compiled op, and the installed mmcv has no compiled '
                'extension (mmcv-lite). mmrefvlm only uses the pure-Python parts of mmcv/mmdet; '
                f'replace the call to `{name}` by a pure-PyTorch implementation, or build full '
                'mmcv==2.1.0 with MMCV_WITH_OPS=1 (see docs/get_started.md).'
            )

        _missing.__name__ = name
        _missing.__qualname__ = f'mmcv._ext.{name}'
        return _missing


def _real_ext_available() -> bool:
    try:
        return importlib.util.find_spec(GUARD_MODULE_NAME) is not None
    except (ImportError, ValueError):  # mmcv itself missing, or broken spec
        return False


def mmcv_ops_guard_installed() -> bool:
    """Return True when ``mmcv._ext`` is the mmrefvlm stand-in."""
    mod = sys.modules.get(GUARD_MODULE_NAME)
    return bool(getattr(mod, 'is_mmrefvlm_guard', False))


def install_mmcv_ops_guard() -> bool:
    """Install the ``mmcv._ext`` stand-in once, if mmcv is installed without compiled ops.

    Must run before the first import of ``mmcv.ops`` or of mmdet modules that import it; the
    package ``__init__`` calls it. Calling it again is a no-op.

    Returns:
        bool: True if the stand-in is in place after the call, False if a real extension (or no
        mmcv at all) is present.
    """
    if GUARD_MODULE_NAME in sys.modules:
        return mmcv_ops_guard_installed()
    if importlib.util.find_spec('mmcv') is None or _real_ext_available():
        return False
    guard = _MissingOpsModule(GUARD_MODULE_NAME, 'mmrefvlm stand-in for the compiled mmcv ops')
    # A spec lets importlib.util.find_spec('mmcv._ext') answer instead of raising ValueError.
    guard.__spec__ = importlib.machinery.ModuleSpec(GUARD_MODULE_NAME, loader=None)
    sys.modules[GUARD_MODULE_NAME] = guard
    import mmcv  # noqa: F401  (mmcv-lite's __init__ is pure Python and does not touch _ext)

    mmcv._ext = guard
    return True
