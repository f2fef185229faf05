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
import pickletools
import struct
from collections import OrderedDict
from typing import Any

import numpy as np
import torch

_TAG = '__mmrefvlm_type__'


class UnsafeCheckpointError(pickle.UnpicklingError):
    """A checkpoint needs arbitrary Python objects (code) to load and was refused."""


class CheckpointFormatError(RuntimeError):
    """A checkpoint file is empty, truncated, corrupted or not a checkpoint at all."""


#: What torch's weights-only unpickler says when a pickle needs a global it does not allow
#: (a class or function: code). Every other unpickling error means a damaged or foreign file.
_NEEDS_CODE = ('was not an allowed global', 'Unsupported global')
#: Errors torch's weights-only unpickler raises on garbage (KeyError / IndexError from its memo
#: and stack, EOFError at a cut, ...). A RuntimeError counts only with one of ``_ZIP_DAMAGE`` in
#: its message, so unrelated ones (e.g. a CUDA ``map_location`` without CUDA) pass through.
_DAMAGED = (EOFError, KeyError, IndexError, ValueError, TypeError, AttributeError, struct.error)
_ZIP_DAMAGE = ('PytorchStreamReader', 'zip archive', 'corrupted')


def _refusal(filename: str, err: Exception) -> UnsafeCheckpointError:
    return UnsafeCheckpointError(
        f'Refused to load {filename!r}: it is a pickle that needs Python objects beyond tensors '
        f'and plain containers ({err.__class__.__name__}: {_reason(err)}). Loading it '
        'could run arbitrary code, so mmrefvlm loads checkpoints with '
        'torch.load(weights_only=True) only. If you '
        'trust the file, convert it once to safetensors with '
        '`python tools/misc/convert_checkpoint.py --trust-pickle IN OUT.safetensors` and load that.'
    )


def _reason(err: BaseException) -> str:
    """The informative line of an error: torch buries it after a long generic preamble."""
    lines = [ln.strip() for ln in str(err).splitlines() if ln.strip()]
    for ln in lines:
        if any(key in ln for key in _NEEDS_CODE) or ln.startswith('Unsupported operand'):
            return ln
    return lines[0] if lines else repr(err)


def _damaged(filename: str, kind: str, err: BaseException) -> CheckpointFormatError:
    return CheckpointFormatError(
        f'checkpoint {filename!r} ({kind}) is corrupted, truncated or not a checkpoint '
        f'({err.__class__.__name__}: {_reason(err)}); an interrupted save or copy leaves such '
        'files: use an earlier checkpoint or copy it again'
    )


#: The first pickle of a legacy ``torch.save`` file holds this number.
_TORCH_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C


def _is_plain_pickle(filename: str) -> bool:
    """Whether the file starts with one well-formed pickle that is not a legacy torch file.

    Read statically with :func:`pickletools.genops` (nothing is executed). Such a file is a real
    pickle that weights-only loading cannot read (e.g. protocol 4, or objects): refused as
    unsafe. Garbage fails to parse and is reported as damaged instead.
    """
    try:
        with open(filename, 'rb') as f:
            args = [arg for _, arg, _ in pickletools.genops(f)]
    except (ValueError, EOFError, struct.error, UnicodeDecodeError):
        return False
    return _TORCH_LEGACY_MAGIC not in args[:3]


def sniff_checkpoint(filename: str) -> str:
    """The container format of a checkpoint file, from its first bytes (not its name).

    Args:
        filename (str): A local file.

    Returns:
        str: ``'safetensors'`` (8-byte little-endian header length, then a JSON object),
        ``'zip'`` (torch >= 1.6 ``torch.save``), ``'pickle'`` (a legacy torch pickle, protocol
        >= 2), ``'empty'`` or ``'unknown'``.
    """
    size = osp.getsize(filename)
    with open(filename, 'rb') as f:
        head = f.read(9)
    if size == 0:
        return 'empty'
    if head.startswith(b'PK\x03\x04'):
        return 'zip'
    if len(head) == 9 and head[8:9] == b'{':
        (header_len,) = struct.unpack('<Q', head[:8])
        if 2 <= header_len <= size - 8:
            return 'safetensors'
    if head[:1] == b'\x80':
        return 'pickle'
    return 'unknown'


def _load_safetensors(filename: str, map_location: Any) -> dict:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    device = map_location if isinstance(map_location, str) else 'cpu'
    try:
        return {'state_dict': OrderedDict(load_file(filename, device=device))}
    except SafetensorError as err:
        raise _damaged(filename, 'safetensors', err) from err


def load_state_file(filename: str, map_location: Any = 'cpu') -> dict:
    """Load a checkpoint file without executing code.

    The format is read from the file's first bytes, so a safetensors file loads as such
    whatever its name (a ``.pth`` that holds safetensors is not mistaken for a pickle).

    Args:
        filename (str): A local path: safetensors or a torch pickle (zip or legacy).
        map_location: Same as :func:`torch.load`. For safetensors, a device string (``'cpu'``
            default) or None.

    Returns:
        dict: The loaded object. Safetensors files give ``{'state_dict': OrderedDict}``.

    Raises:
        FileNotFoundError: The file does not exist.
        UnsafeCheckpointError: The pickle needs globals that weights-only loading refuses.
        CheckpointFormatError: The file is empty, damaged or not a checkpoint; the message
            names the detected format and the underlying error.
    """
    if not osp.isfile(filename):
        raise FileNotFoundError(f'checkpoint file {filename!r} does not exist')
    kind = sniff_checkpoint(filename)
    if kind == 'empty':
        raise CheckpointFormatError(
            f'checkpoint {filename!r} is empty (0 bytes): an interrupted save or copy; use an '
            'earlier checkpoint or copy it again'
        )
    if kind == 'safetensors' or (kind == 'unknown' and filename.endswith('.safetensors')):
        return _load_safetensors(filename, map_location)
    if kind == 'unknown':
        with open(filename, 'rb') as f:
            head = f.read(8)
        raise CheckpointFormatError(
            f'{filename!r} is not a checkpoint: neither a torch.save file (zip or pickle) nor '
            f'safetensors (it starts with {head!r})'
        )
    try:
        return torch.load(filename, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        if any(key in str(err) for key in _NEEDS_CODE) or _is_plain_pickle(filename):
            raise _refusal(filename, err) from err
        raise _damaged(filename, f'torch {kind}', err) from err
    except _DAMAGED as err:
        raise _damaged(filename, f'torch {kind}', err) from err
    except RuntimeError as err:
        if any(key in str(err) for key in _ZIP_DAMAGE):
            raise _damaged(filename, f'torch {kind}', err) from err
        raise


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
