# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""``SyncCounter``: count the device->host synchronisations and host->device copies of a region.

On CUDA, ``torch.cuda.set_sync_debug_mode('warn')`` reports synchronising calls, but it needs a
GPU. This counter works on CPU tensors too: it counts what *would* synchronise if the tensors the
region receives (inputs, parameters, data-sample fields moved by the data preprocessor) lived on
an accelerator. It is a pair of PyTorch modes: a ``TorchFunctionMode`` sees Python-level calls
(``.tolist()``, ``.numpy()``, ``.cpu()``, ``.to(device)``, ``torch.tensor(..., device=...)``) and a
``TorchDispatchMode`` sees the ATen ops they and everything else run.

Counted as **device -> host syncs** (``d2h``), when an operand is a device tensor:

* ``aten._local_scalar_dense``: ``.item()``, ``bool(t)`` / ``if t:``, ``int(t)``, ``float(t)``,
  indexing with a 0-dim tensor;
* ops whose output shape depends on the data: ``nonzero``, ``masked_select``, boolean-mask
  indexing and assignment (``index`` / ``index_put_`` with a bool index), ``unique`` /
  ``unique_consecutive``, ``bincount``, ``repeat_interleave`` without ``output_size``;
* ``torch.equal``, ``multinomial``, ``nanmedian``, ``_ctc_loss``;
* copies to the host: ``.tolist()``, ``.numpy()``, ``.cpu()``, ``.to('cpu')``, ``copy_`` into a
  host tensor.

Counted as **host -> device copies**: ``torch.tensor`` / ``as_tensor`` / ``new_tensor`` with
device data, ``.to(device)`` / ``copy_`` of host tensors, host index tensors used on device
tensors, and host tensors mixed into device ops. A copy is ``h2d_async`` when it is
``non_blocking=True`` from pinned memory (simulation: ``non_blocking=True``, since pinning needs
an accelerator), otherwise ``h2d_pageable`` (a blocking copy: on CUDA it waits for the stream).

Simulation (``simulate=True``, the default): CPU tensors stand for device tensors, except those
the region creates on the host: factory calls without an explicit ``device`` argument,
``torch.tensor(data)`` / ``from_numpy`` without one, results of ops on host tensors only, results
of ``.cpu()``; and tensors passed to :meth:`SyncCounter.mark_host`. Host work done with numpy or
Python is invisible (and free). With ``simulate=False`` the real device of each tensor decides (use
it on CUDA, next to ``set_sync_debug_mode``).

Not seen: synchronisations inside a kernel that is not in the lists above, stream or event
``synchronize`` calls, and ``torch.distributed``.

Example:
    >>> with SyncCounter() as counter:
    ...     n = int(mask.sum())             # 1 sync
    ...     rows = mask.nonzero()           # 1 sync
    >>> counter.num_syncs
    2
"""

from __future__ import annotations

import os
import traceback
from dataclasses import dataclass
from typing import Any

import torch
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten
from torch.utils.weak import WeakIdKeyDictionary

__all__ = ['SyncCounter', 'SyncEvent']

aten = torch.ops.aten

#: ATen overload packets that always read device data back to the host.
SYNC_OPS = frozenset(
    {
        aten._local_scalar_dense,
        aten.nonzero,
        aten.masked_select,
        aten.unique_consecutive,
        aten.unique_dim,
        aten.unique_dim_consecutive,
        aten._unique,
        aten._unique2,
        aten.bincount,
        aten.equal,
        aten.multinomial,
        aten.nanmedian,
        aten._ctc_loss,
    }
)
INDEX_OPS = frozenset({aten.index, aten.index_put, aten.index_put_, aten._index_put_impl_})
NO_TENSOR_INPUT_OPS = frozenset({aten.lift_fresh, aten.lift_fresh_copy})
#: Python-level calls that copy a tensor to the host.
TO_HOST_METHODS = frozenset({'tolist', 'numpy', 'cpu', '__array__'})
NEW_DATA_FUNCTIONS = frozenset({'tensor', 'as_tensor', 'asarray', 'new_tensor'})


@dataclass(frozen=True)
class SyncEvent:
    """One counted event.

    Attributes:
        kind (str): ``'d2h'``, ``'h2d_pageable'`` or ``'h2d_async'``.
        op (str): The ATen op or Python call.
        where (str): ``file:line (function)`` of the innermost caller outside torch.
    """

    kind: str
    op: str
    where: str


_HERE = os.path.abspath(__file__)


def _caller() -> str:
    for frame in reversed(traceback.extract_stack()[:-3]):
        name = frame.filename.replace('\\', '/')
        if '/torch/' not in name and os.path.abspath(frame.filename) != _HERE:
            return f'{name}:{frame.lineno} ({frame.name})'
    return '?'


def _tensors(args: Any, kwargs: Any) -> list[torch.Tensor]:
    flat, _ = tree_flatten((args, kwargs or {}))
    return [t for t in flat if isinstance(t, torch.Tensor)]


class _Dispatch(TorchDispatchMode):
    def __init__(self, counter: SyncCounter) -> None:
        super().__init__()
        self.counter = counter

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        self.counter._on_aten(func, args, kwargs or {}, out)
        return out


class _Function(TorchFunctionMode):
    def __init__(self, counter: SyncCounter) -> None:
        super().__init__()
        self.counter = counter

    def __torch_function__(self, func, types, args=(), kwargs=None):
        return self.counter._on_call(func, args, kwargs or {})


class SyncCounter:
    """Context manager counting device->host syncs and host->device copies (module docstring).

    Args:
        simulate (bool): Treat CPU tensors as device tensors unless created on the host inside
            the region (see the module docstring). False: real devices decide. Defaults to True.
        record_stack (bool): Record where each event happened. Defaults to True.

    Attributes:
        events (list[SyncEvent]): Everything counted, in order.
    """

    def __init__(self, *, simulate: bool = True, record_stack: bool = True) -> None:
        self.simulate = simulate
        self.record_stack = record_stack
        self.events: list[SyncEvent] = []
        self._host: WeakIdKeyDictionary = WeakIdKeyDictionary()
        self._device: WeakIdKeyDictionary = WeakIdKeyDictionary()
        self._quiet = 0  # > 0 inside a Python call already counted: skip its ATen ops
        self._explicit_device: list[bool] = []
        self._modes: tuple[_Function, _Dispatch] | None = None

    # ------------------------------------------------------------------ public
    def __enter__(self) -> SyncCounter:
        self._modes = (_Function(self), _Dispatch(self))
        for mode in self._modes:
            mode.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        assert self._modes is not None
        for mode in reversed(self._modes):
            mode.__exit__(*exc)
        self._modes = None

    def mark_host(self, *tensors: torch.Tensor) -> None:
        """Declare pre-existing CPU tensors as host memory (simulation)."""
        for t in tensors:
            self._host[t] = True

    def of_kind(self, kind: str) -> list[SyncEvent]:
        """Events of one kind (``'d2h'``, ``'h2d_pageable'``, ``'h2d_async'``)."""
        return [e for e in self.events if e.kind == kind]

    @property
    def num_syncs(self) -> int:
        """Device -> host synchronisations."""
        return len(self.of_kind('d2h'))

    @property
    def num_h2d_pageable(self) -> int:
        """Blocking host -> device copies (pageable memory)."""
        return len(self.of_kind('h2d_pageable'))

    def report(self) -> str:
        """One line per event: kind, op, location."""
        return '\n'.join(f'{e.kind:13s} {e.op:32s} {e.where}' for e in self.events)

    # ------------------------------------------------------------------ device model
    def is_device(self, t: torch.Tensor) -> bool:
        """Whether ``t`` is (or stands for) accelerator memory."""
        if t.device.type == 'meta':
            return False
        if not self.simulate:
            return t.device.type != 'cpu'
        return t not in self._host

    def _tag(self, out: Any, host: bool) -> None:
        if not self.simulate:
            return
        for t in _tensors(out, None):
            if host:
                self._host[t] = True
            else:
                self._host.pop(t, None)

    def _add(self, kind: str, op: str) -> None:
        where = _caller() if self.record_stack else ''
        self.events.append(SyncEvent(kind, op, where))

    # ------------------------------------------------------------------ ATen level
    def _on_aten(self, func, args, kwargs, out) -> None:
        packet = func.overloadpacket
        tensors = _tensors(args, kwargs)
        if packet in NO_TENSOR_INPUT_OPS:
            tensors = []
        on_device = [t for t in tensors if self.is_device(t)]
        if self._quiet == 0:
            self._count_aten(func, packet, args, kwargs, tensors, on_device)
        if func._schema.name.endswith('_') or packet is aten.copy_:
            return  # in place: the output is the destination, which keeps its side
        if not tensors:
            explicit = self._explicit_device[-1] if self._explicit_device else False
            self._tag(out, host=not explicit)
        else:
            self._tag(out, host=not on_device)

    def _count_aten(self, func, packet, args, kwargs, tensors, on_device) -> None:
        name = str(func)
        if packet in (aten._to_copy, aten.copy_):
            kind = self._copy_kind(packet, args, kwargs)
            if kind:
                self._add(kind, name)
            return
        if not on_device:
            return
        if packet in SYNC_OPS:
            self._add('d2h', name)
        elif func is aten.repeat_interleave.Tensor and kwargs.get('output_size') is None:
            self._add('d2h', name)
        elif packet in INDEX_OPS:
            indices = [i for i in args[1] if isinstance(i, torch.Tensor)]
            if any(i.dtype in (torch.bool, torch.uint8) for i in indices):
                self._add('d2h', name)
            elif any(not self.is_device(i) and i.dim() > 0 for i in indices):
                self._add('h2d_pageable', name)
        elif self.simulate and any(not self.is_device(t) and t.dim() > 0 for t in tensors):
            self._add('h2d_pageable', name)  # a host tensor mixed into a device op

    def _copy_kind(self, packet, args, kwargs) -> str | None:
        """Kind of an ATen copy between host and device (None: same side)."""
        if packet is aten._to_copy:
            src = args[0]
            if self.simulate:
                return None  # ``.to(...)`` is classified at the Python level
            dst_dev = torch.device(kwargs.get('device') or src.device).type != 'cpu'
        else:
            dst, src = args[0], args[1]
            dst_dev = self.is_device(dst)
        src_dev = self.is_device(src)
        if src_dev and not dst_dev:
            return 'd2h'
        if dst_dev and not src_dev and (src.dim() > 0 or not self.simulate):
            fast = kwargs.get('non_blocking', False) or (len(args) > 2 and bool(args[2]))
            pinned = self.simulate or src.is_pinned()
            return 'h2d_async' if fast and pinned else 'h2d_pageable'
        return None

    # ------------------------------------------------------------------ Python level
    def _on_call(self, func, args, kwargs):
        name = getattr(func, '__name__', str(func))
        device = kwargs.get('device')
        self._explicit_device.append(device is not None and self._device_side(device))
        kind, side = self._classify_call(name, args, kwargs)
        if kind:
            self._add(kind, name)
        quiet = side is not None or name in TO_HOST_METHODS or name in NEW_DATA_FUNCTIONS
        self._quiet += int(quiet)
        try:
            out = func(*args, **kwargs)
            if self.simulate and side is not None and isinstance(out, torch.Tensor):
                if args and out is args[0]:  # a real transfer returns a new tensor
                    out = out.clone()
                self._tag(out, host=side == 'host')
        finally:
            self._quiet -= int(quiet)
            self._explicit_device.pop()
        return out

    def _classify_call(self, name: str, args, kwargs) -> tuple[str | None, str | None]:
        """``(event kind or None, side of the result or None)`` of a Python-level call."""
        src = args[0] if args and isinstance(args[0], torch.Tensor) else None
        if name in TO_HOST_METHODS:
            if src is None:
                return None, None
            return ('d2h' if self.is_device(src) else None), 'host'
        if name in ('to', 'cuda') or (name in ('as_tensor', 'asarray') and src is not None):
            if src is None:
                return None, None
            return self._classify_move(src, self._target_device(name, args, kwargs), kwargs)
        if name in NEW_DATA_FUNCTIONS:
            if name == 'new_tensor':
                to_device = src is not None and self.is_device(src)
            else:
                target = self._target_device(name, args, kwargs)
                to_device = target is not None and self._device_side(target)
            return ('h2d_pageable' if to_device else None), ('device' if to_device else 'host')
        return None, None

    def _target_device(self, name: str, args, kwargs) -> Any:
        """The ``device`` argument of a call as given (str, torch.device or tensor), or None."""
        if name == 'cuda':
            return torch.device('cuda')
        cands = [kwargs.get('device'), *args[1:]] if name == 'to' else [kwargs.get('device')]
        for c in cands:
            if isinstance(c, (str, torch.device, torch.Tensor)):
                return c
        return None

    def _classify_move(self, src, device, kwargs) -> tuple[str | None, str | None]:
        if device is None:
            return None, None
        src_dev = self.is_device(src)
        dst_dev = self._device_side(device)
        side = 'device' if dst_dev else 'host'
        if src_dev and not dst_dev:
            return 'd2h', side
        if dst_dev and not src_dev:
            fast = bool(kwargs.get('non_blocking', False))
            pinned = self.simulate or src.is_pinned()
            return ('h2d_async' if fast and pinned else 'h2d_pageable'), side
        return None, None

    def _device_side(self, device: Any) -> bool:
        """Whether a ``device`` argument names the accelerator. Simulation: a ``torch.device``
        (e.g. ``x.device``) or a tensor on the device does, the string ``'cpu'`` does not."""
        if isinstance(device, torch.Tensor):
            return self.is_device(device)
        if self.simulate:
            return not (isinstance(device, str) and torch.device(device).type == 'cpu')
        return torch.device(device).type != 'cpu'
