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
def encode_safe(obj: Any) -> Any:
    """Encode the non-tensor objects MMEngine stores in checkpoints into weights-only-safe ones.

    Handles ``HistoryBuffer``, ``np.ndarray`` and numpy scalars, recursively through dicts, lists
    and tuples. Anything else that ``torch.load(weights_only=True)`` would refuse raises
    ``TypeError`` at save time, so a checkpoint can never be written that mmrefvlm cannot load
    again.
    """
    from mmengine.logging import HistoryBuffer

    # numpy scalars first: np.float64 is a subclass of float but pickles as a numpy global.
    if isinstance(obj, np.generic):
        return {_TAG: 'npscalar', 'value': obj.item(), 'dtype': str(obj.dtype)}
    if (
        isinstance(obj, torch.Tensor)
        or obj is None
        or isinstance(obj, (bool, int, float, str, bytes))
    ):
        return obj
    if isinstance(obj, HistoryBuffer):
        return {
            _TAG: 'HistoryBuffer',
            'log_history': encode_safe(obj._log_history),
            'count_history': encode_safe(obj._count_history),
            'max_length': obj.max_length,
        }
    if isinstance(obj, np.ndarray):
        if obj.dtype == object:
            raise TypeError('cannot save a numpy object array in a weights-only checkpoint')
        return {
            _TAG: 'ndarray',
            'data': torch.from_numpy(np.ascontiguousarray(obj)).clone(),
            'dtype': str(obj.dtype),
        }
    if isinstance(obj, (torch.dtype, torch.device, torch.Size)):
        return obj
    if isinstance(obj, OrderedDict):
        return OrderedDict((k, encode_safe(v)) for k, v in obj.items())
    if isinstance(obj, dict):
        return {k: encode_safe(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [encode_safe(v) for v in obj]
    if isinstance(obj, tuple):
        return tuple(encode_safe(v) for v in obj)
    raise TypeError(
        f'cannot store an object of type {type(obj).__module__}.{type(obj).__qualname__} in a '
        'weights-only-safe checkpoint; convert it to tensors or plain containers first'
    )


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
    if isinstance(obj, tuple):
        return tuple(decode_safe(v) for v in obj)
    return obj
