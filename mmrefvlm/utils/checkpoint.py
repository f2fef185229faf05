# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""Safe checkpoint loading for MMEngine on torch >= 2.6.

Policy (one rule for every file, no "trusted" path):

* ``*.safetensors`` files load through :mod:`safetensors` (tensors only, no code).
* Every other local file loads with ``torch.load(weights_only=True)``. A pickle that needs
  arbitrary globals (code) is refused with :class:`UnsafeCheckpointError`, which says how to convert
  a file you trust.
* mmrefvlm's own checkpoints are *written* weights-only-safe: :class:`SafeCheckpointHook` encodes
  the objects MMEngine puts in a checkpoint (``HistoryBuffer``, numpy arrays and scalars in the
  message hub) as tensors and plain containers before saving, and decodes them after loading, so
  resume restores the exact same state while ``load_from``, ``--resume`` and ``tools/test.py`` all
  load weights-only.
"""

from __future__ import annotations

import os.path as osp
import pickle
from collections import OrderedDict
from typing import Any

import numpy as np
import torch

_TAG = '__mmrefvlm_type__'


class UnsafeCheckpointError(pickle.UnpicklingError):
    """A checkpoint needs arbitrary Python objects (code) to load and was refused."""


def _refusal(filename: str, err: Exception) -> UnsafeCheckpointError:
    return UnsafeCheckpointError(
        f'Refused to load {filename!r}: it is a pickle that needs Python objects beyond tensors '
        f'and plain containers ({err.__class__.__name__}: {str(err).splitlines()[0]}). Loading it '
        'could run arbitrary code, so mmrefvlm loads checkpoints with '
        'torch.load(weights_only=True) only. If you '
        'trust the file, convert it once to safetensors with '
        '`python tools/misc/convert_checkpoint.py --trust-pickle IN OUT.safetensors` and load that.'
    )


def load_state_file(filename: str, map_location: Any = 'cpu') -> dict:
    """Load a checkpoint file without executing code.

    Args:
        filename (str): A local path: ``.safetensors`` or a torch pickle.
        map_location: Same as :func:`torch.load`. For safetensors, a device string (``'cpu'``
            default) or None.

    Returns:
        dict: The loaded object. Safetensors files give ``{'state_dict': OrderedDict}``.

    Raises:
        FileNotFoundError: The file does not exist.
        UnsafeCheckpointError: The pickle needs globals that weights-only loading refuses.
    """
    if not osp.isfile(filename):
        raise FileNotFoundError(f'checkpoint file {filename!r} does not exist')
    if filename.endswith('.safetensors'):
        from safetensors.torch import load_file

        device = map_location if isinstance(map_location, str) else 'cpu'
        return {'state_dict': OrderedDict(load_file(filename, device=device))}
    try:
        return torch.load(filename, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        raise _refusal(filename, err) from err


def _load_local(filename: str, map_location: Any) -> dict:
    return load_state_file(filename, map_location=map_location)


def register_checkpoint_loaders() -> None:
    """Route MMEngine's local-file checkpoint loading through :func:`load_state_file`.

    Idempotent. Remote schemes (``http://``, ``open-mmlab://``) are left to MMEngine; they download
    and are never used by mmrefvlm configs.
    """
    from mmengine.runner.checkpoint import CheckpointLoader

    if CheckpointLoader._schemes.get('') is _load_local:
        return
    CheckpointLoader.register_scheme(prefixes='', loader=_load_local, force=True)


# --------------------------------------------------------------------------- safe encoding
#: Python types that ``torch.load(weights_only=True)`` restores as themselves (exact types only:
#: a subclass such as an ``IntEnum`` pickles as its class and would not load).
_PLAIN_TYPES = (type(None), bool, int, float, complex, str, bytes)
#: numpy dtype kinds whose scalars and arrays round-trip exactly (bool, ints, floats, complex).
_NUMERIC_KINDS = 'biufc'


def _refuse(obj: Any, why: str = '') -> TypeError:
    return TypeError(
        f'cannot store an object of type {type(obj).__module__}.{type(obj).__qualname__} in a '
        f'weights-only-safe checkpoint{why}; convert it to tensors or plain containers first'
    )


def _encode_numpy(obj: np.generic | np.ndarray) -> dict:
    """Tagged dict of a numpy scalar or array; its dtype string keeps the byte order."""
    if obj.dtype.kind not in _NUMERIC_KINDS and not (
        isinstance(obj, np.generic) and obj.dtype.kind in 'SU'
    ):
        raise _refuse(obj, f' (numpy dtype {obj.dtype} does not round-trip)')
    if isinstance(obj, np.generic):
        return {_TAG: 'npscalar', 'value': obj.item(), 'dtype': obj.dtype.str}
    # np.array(copy=True) keeps 0-d arrays 0-d (np.ascontiguousarray would make them 1-d).
    native = np.array(obj, dtype=obj.dtype.newbyteorder('='), order='C', copy=True)
    return {_TAG: 'ndarray', 'data': torch.from_numpy(native), 'dtype': obj.dtype.str}


def _check_key(key: Any) -> None:
    if type(key) is tuple:
        for k in key:
            _check_key(k)
    elif type(key) not in _PLAIN_TYPES:
        raise _refuse(key, ' as a dict key')


def encode_safe(obj: Any) -> Any:
    """Encode the non-tensor objects MMEngine stores in checkpoints into weights-only-safe ones.

    Handles ``HistoryBuffer``, numeric ``np.ndarray`` and numpy scalars, recursively through dicts,
    ``OrderedDict``, lists and tuples. :func:`decode_safe` restores them exactly: types, numpy
    dtypes (byte order included), shapes, key order and buffer settings. Anything that would not
    come back as itself (a ``namedtuple``, ``defaultdict``, enum, numpy datetime, a numpy dict
    key...) raises ``TypeError`` at save time, so a checkpoint can never be written that mmrefvlm
    cannot load again, or that loads as something else.
    """
    from mmengine.logging import HistoryBuffer

    # numpy first: np.float64 is a subclass of float but pickles as a numpy global.
    if isinstance(obj, (np.generic, np.ndarray)):
        return _encode_numpy(obj)
    if type(obj) in _PLAIN_TYPES or isinstance(
        obj, (torch.Tensor, torch.dtype, torch.device, torch.Size)
    ):
        return obj
    if type(obj) is HistoryBuffer:
        return {
            _TAG: 'HistoryBuffer',
            'log_history': encode_safe(obj._log_history),
            'count_history': encode_safe(obj._count_history),
            'max_length': obj.max_length,
        }
    if type(obj) in (dict, OrderedDict):
        if _TAG in obj:
            raise _refuse(obj, f' (a dict with the reserved key {_TAG!r})')
        for key in obj:
            _check_key(key)
        return type(obj)((k, encode_safe(v)) for k, v in obj.items())
    if type(obj) in (list, tuple):
        return type(obj)(encode_safe(v) for v in obj)
    raise _refuse(obj)


def decode_safe(obj: Any) -> Any:
    """Inverse of :func:`encode_safe`."""
    from mmengine.logging import HistoryBuffer

    if isinstance(obj, dict):
        tag = obj.get(_TAG) if not isinstance(obj, OrderedDict) else None
        if tag == 'HistoryBuffer':
            buf = HistoryBuffer(max_length=obj['max_length'])
            buf._log_history = decode_safe(obj['log_history'])
            buf._count_history = decode_safe(obj['count_history'])
            return buf
        if tag == 'ndarray':
            # ``runner.resume`` maps checkpoints to the training device: bring arrays home first.
            return obj['data'].cpu().numpy().astype(obj['dtype'], copy=True)
        if tag == 'npscalar':
            return np.array(obj['value'], dtype=obj['dtype'])[()]
        items = ((k, decode_safe(v)) for k, v in obj.items())
        return OrderedDict(items) if isinstance(obj, OrderedDict) else dict(items)
    if isinstance(obj, list):
        return [decode_safe(v) for v in obj]
    if isinstance(obj, torch.Size):
        return obj
    if isinstance(obj, tuple):
        return tuple(decode_safe(v) for v in obj)
    return obj
