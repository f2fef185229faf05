# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""Damaged and mislabelled checkpoint files: the error names the real problem (issue 17).

Before: garbage gave ``KeyError: 101`` (or ``IndexError``), an empty file a bare ``EOFError``, and
a safetensors file named ``.pth`` was refused as "a pickle that needs Python objects".
"""

from __future__ import annotations

import os.path as osp
import random

import pytest
import torch
from safetensors.torch import save_file

from mmrefvlm.utils import CheckpointFormatError, UnsafeCheckpointError, load_state_file
from mmrefvlm.utils.checkpoint import sniff_checkpoint


def _write(tmp_path, name: str, data: bytes) -> str:
    path = osp.join(str(tmp_path), name)
    with open(path, 'wb') as f:
        f.write(data)
    return path


def test_empty_file_is_named_empty(tmp_path):
    path = _write(tmp_path, 'iter_5.pth', b'')
    with pytest.raises(CheckpointFormatError, match=r'iter_5\.pth.*empty \(0 bytes\)'):
        load_state_file(path)


@pytest.mark.parametrize('seed', range(12))
def test_garbage_is_not_a_checkpoint_or_corrupted(tmp_path, seed):
    rng = random.Random(seed)
    data = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 200)))
    if seed % 3 == 0:  # starts like a legacy pickle, so torch's unpickler reads on into garbage
        data = b'\x80\x02' + data
    path = _write(tmp_path, 'model.pth', data)
    with pytest.raises(CheckpointFormatError) as info:
        load_state_file(path)
    msg = str(info.value)
    assert 'model.pth' in msg and ('not a checkpoint' in msg or 'corrupted' in msg), msg
    assert 'needs Python objects' not in msg  # never mistaken for a code pickle


def test_garbage_pickle_opcodes_are_corrupt_not_unsafe(tmp_path):
    # b'e' (APPENDS) on an empty stack: the unpickler's own IndexError / KeyError before
    path = _write(tmp_path, 'x.pth', b'\x80\x02e' + b'x' * 20)
    with pytest.raises(CheckpointFormatError, match='torch pickle.*corrupted'):
        load_state_file(path)


def test_safetensors_named_pth_loads_as_safetensors(tmp_path):
    path = osp.join(str(tmp_path), 'weights.pth')
    save_file({'w': torch.arange(3.0)}, path)
    assert sniff_checkpoint(path) == 'safetensors'
    state = load_state_file(path)
    assert torch.equal(state['state_dict']['w'], torch.arange(3.0))


def test_damaged_safetensors_names_the_format(tmp_path):
    path = _write(tmp_path, 'w.safetensors', b'\x08\x00\x00\x00\x00\x00\x00\x00{"a":1}xx')
    with pytest.raises(CheckpointFormatError, match='safetensors.*corrupted.*header'):
        load_state_file(path)


def test_code_pickle_is_still_refused_as_unsafe(tmp_path):
    path = osp.join(str(tmp_path), 'code.pth')
    torch.save({'f': random.Random}, path)  # a class: code
    with pytest.raises(UnsafeCheckpointError, match='needs Python objects.*Random'):
        load_state_file(path)


def test_sniff_formats(tmp_path):
    zip_path = osp.join(str(tmp_path), 'a.pth')
    torch.save({'w': torch.ones(1)}, zip_path)
    legacy = osp.join(str(tmp_path), 'b.pth')
    torch.save({'w': torch.ones(1)}, legacy, _use_new_zipfile_serialization=False)
    assert sniff_checkpoint(zip_path) == 'zip' and sniff_checkpoint(legacy) == 'pickle'
    assert torch.equal(load_state_file(legacy)['w'], torch.ones(1))
    assert sniff_checkpoint(_write(tmp_path, 'c.bin', b'hello')) == 'unknown'
