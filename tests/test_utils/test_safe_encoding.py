# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""encode_safe / decode_safe through a weights-only file: every attribute survives, or saving fails.

A checkpoint is only useful if ``decode(load(save(encode(x))))`` is ``x`` again: the same types,
numpy dtypes (byte order included), shapes (0-d too), key order and ``HistoryBuffer`` settings, not
only equal values. What cannot be restored exactly must be refused at save time (``TypeError``),
never written as something that loads differently or does not load at all.
"""

import collections
import enum
import io
from collections import OrderedDict

import numpy as np
import pytest
import torch
from mmengine.hooks import Hook
from mmengine.logging import HistoryBuffer

from mmrefvlm.utils import decode_safe, encode_safe


def through_file(obj):
    buf = io.BytesIO()
    torch.save(encode_safe(obj), buf)
    buf.seek(0)
    return decode_safe(torch.load(buf, weights_only=True))


def assert_same(got, want, path='x'):
    """Equal values *and* equal attributes: type, dtype, shape, key order, buffer settings."""
    assert type(got) is type(want), f'{path}: type {type(got)} != {type(want)}'
    if isinstance(want, np.ndarray):
        assert got.dtype == want.dtype and got.dtype.str == want.dtype.str, (path, got.dtype)
        assert got.shape == want.shape, (path, got.shape, want.shape)
        assert np.array_equal(got, want, equal_nan=want.dtype.kind in 'fc'), path
    elif isinstance(want, np.generic):
        assert got.dtype == want.dtype, (path, got.dtype, want.dtype)
        assert got == want or (got != got and want != want), (path, got, want)
    elif isinstance(want, HistoryBuffer):
        assert got.max_length == want.max_length, (path, got.max_length, want.max_length)
        assert_same(got._log_history, want._log_history, f'{path}._log_history')
        assert_same(got._count_history, want._count_history, f'{path}._count_history')
    elif isinstance(want, dict):
        assert list(got) == list(want), f'{path}: keys {list(got)} != {list(want)}'
        for key in want:
            assert type(key) is type([k for k in got if k == key][0]), (path, key)
            assert_same(got[key], want[key], f'{path}[{key!r}]')
    elif isinstance(want, (list, tuple)):
        assert len(got) == len(want), path
        for i, (g, w) in enumerate(zip(got, want, strict=True)):
            assert_same(g, w, f'{path}[{i}]')
    elif isinstance(want, torch.Tensor):
        assert got.dtype == want.dtype and got.shape == want.shape, path
        assert torch.equal(got, want), path
    else:
        assert got == want, (path, got, want)


ROUND_TRIPS = {
    # numpy scalars of every kind MMEngine logs (np.float64 is a float subclass: its own case)
    'float64': np.float64(0.1),
    'float32': np.float32(1 / 3),
    'float16': np.float16(0.1),
    'int8': np.int8(-5),
    'uint64 above 2**63': np.uint64(2**63 + 1),
    'bool_': np.bool_(True),
    'complex64': np.complex64(1 + 2j),
    'str_': np.str_('x'),
    'nan scalar': np.float32('nan'),
    # arrays: dtype, byte order and shape, 0-d included
    'int16 array': np.arange(3, dtype=np.int16),
    'uint16 array': np.array([0, 65535], dtype=np.uint16),
    'bool array': np.array([[True, False]]),
    'float16 2-D': np.linspace(0, 1, 6, dtype=np.float16).reshape(2, 3),
    '0-d float array': np.array(3.5),
    '0-d int32 array': np.array(7, dtype=np.int32),
    'empty (0, 3)': np.zeros((0, 3), dtype=np.float32),
    'fortran order': np.asfortranarray(np.arange(6, dtype=np.int64).reshape(2, 3)),
    'strided view': np.arange(12, dtype=np.float64).reshape(3, 4)[:, ::2],
    'big-endian int32': np.arange(3, dtype='>i4'),
    'big-endian float64': np.array([1.5, -2.0], dtype='>f8'),
    # MMEngine's log buffer: non-default max_length and int count history
    'HistoryBuffer': HistoryBuffer([1.0, 2.5, 3.0], [1, 2, 3], max_length=5),
    'empty HistoryBuffer': HistoryBuffer(max_length=7),
    # containers: order and kind
    'OrderedDict order': OrderedDict([('z', 1), ('a', np.arange(2)), ('m', None)]),
    'dict order and int keys': {3: 'c', 1: 'a', 'b': 2.0},
    'nested': {'a': [np.float32(1), (np.int64(2), 'x')], 'b': ({'c': np.array([1.0])},)},
    'plain values': [None, True, 3, 2.5, 'str', b'bytes', (), [], {}],
    'torch values': [torch.tensor([1, 2]), torch.float16, torch.Size([2, 3]), torch.device('cpu')],
}


@pytest.mark.parametrize('name', sorted(ROUND_TRIPS))
def test_round_trip_keeps_every_attribute(name):
    obj = ROUND_TRIPS[name]
    assert_same(through_file(obj), obj)


class _Level(enum.IntEnum):
    HIGH = 1


_Point = collections.namedtuple('_Point', 'x y')

REFUSED = {
    # each of these would be written but come back as something else, or not load at all
    'object': object(),
    'namedtuple (would load as a tuple)': _Point(1, 2),
    'defaultdict (would load as a dict)': collections.defaultdict(list, a=[1]),
    'IntEnum (an int subclass: not loadable)': _Level.HIGH,
    'numpy datetime64 (not loadable)': np.datetime64('2020-01-01'),
    'numpy scalar dict key (not loadable)': {np.int64(3): 1},
    'object array': np.array([1, 'a'], dtype=object),
    'str array': np.array(['a', 'bc']),
    'dict holding the encoding tag (would decode as an array)': {
        '__mmrefvlm_type__': 'ndarray',
        'data': torch.ones(1),
        'dtype': 'float32',
    },
    'set': {1, 2},
}


@pytest.mark.parametrize('name', sorted(REFUSED))
def test_what_cannot_round_trip_is_refused_at_save_time(name):
    with pytest.raises(TypeError, match='weights-only'):
        encode_safe({'meta': [REFUSED[name]]})


def test_decoded_arrays_are_writable_copies():
    # Resuming code mutates restored buffers in place; a read-only or shared view would break it.
    arr = np.arange(4, dtype=np.float32)
    out = through_file({'a': arr})['a']
    out[0] = 9.0
    assert arr[0] == 0.0 and out.flags.writeable


# --------------------------------------------------------------------------- the hook's priority
class _NumpyIntoMeta(Hook):
    """Adds numpy values to the checkpoint's meta, as hooks and the Runner do (dataset_meta)."""

    def __init__(self, key):
        self.key = key

    def before_save_checkpoint(self, runner, checkpoint):
        checkpoint['meta'][self.key] = {'scalar': np.float32(0.5), 'array': np.arange(3)}


def test_encoding_runs_after_every_other_hook_has_added_its_fields(tmp_path):
    # MMEngine calls each hook method in one priority order. Hooks of every priority (down to
    # CheckpointHook's VERY_LOW) may add fields in before_save_checkpoint; the encoding must come
    # after all of them, or the file holds numpy objects and does not load weights-only.
    from mmengine.runner import Runner

    from mmrefvlm.engine.hooks import SafeCheckpointHook

    from .test_checkpoint import ToyData, ToyModel

    priorities = ('HIGHEST', 'NORMAL', 'VERY_LOW')
    runner = Runner(
        model=dict(type=ToyModel),
        work_dir=str(tmp_path),
        train_dataloader=dict(
            dataset=ToyData(),
            batch_size=4,
            sampler=dict(type='InfiniteSampler', shuffle=False),
            collate_fn=dict(type='pseudo_collate'),
        ),
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.1)),
        train_cfg=dict(by_epoch=False, max_iters=1),
        default_hooks=dict(checkpoint=dict(type='CheckpointHook', interval=1, by_epoch=False)),
        custom_hooks=[dict(type=SafeCheckpointHook)]
        + [dict(type=_NumpyIntoMeta, key=p, priority=p) for p in priorities],
        default_scope='mmrefvlm',
        experiment_name=f'hook_order_{tmp_path.name}',
    )
    runner.train()
    raw = torch.load(str(tmp_path / 'iter_1.pth'), weights_only=True)
    meta = decode_safe(raw['meta'])
    for p in priorities:
        assert_same(meta[p], {'scalar': np.float32(0.5), 'array': np.arange(3)})
    assert type(runner.hooks[-1]) is SafeCheckpointHook
