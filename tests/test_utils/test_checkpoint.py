# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""Resume and load_from on torch >= 2.6 with weights-only loading everywhere."""

import itertools
import os
import os.path as osp
import pickle

import numpy as np
import pytest
import torch
from mmengine.logging import HistoryBuffer
from mmengine.model import BaseModel
from mmengine.runner import Runner
from torch import nn
from torch.utils.data import Dataset

from mmrefvlm.engine.hooks import SafeCheckpointHook
from mmrefvlm.utils import UnsafeCheckpointError, decode_safe, encode_safe, load_state_file

_RUN_IDS = itertools.count()


class ToyModel(BaseModel):
    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(2, 1)

    def forward(self, inputs, data_samples=None, mode='tensor'):
        x = torch.stack(inputs)
        y = torch.stack(data_samples)
        pred = self.linear(x)
        if mode == 'loss':
            return dict(loss=((pred - y) ** 2).mean())
        return pred


class ToyData(Dataset):
    def __init__(self):
        g = torch.Generator().manual_seed(0)
        self.x = torch.randn(16, 2, generator=g)
        self.y = self.x.sum(1, keepdim=True)

    def __len__(self):
        return 16

    def __getitem__(self, i):
        return dict(inputs=self.x[i], data_samples=self.y[i])


def _runner(work_dir, max_iters, **kwargs):
    return Runner(
        model=dict(type=ToyModel),
        work_dir=work_dir,
        train_dataloader=dict(
            dataset=ToyData(),
            batch_size=4,
            num_workers=0,
            sampler=dict(type='InfiniteSampler', shuffle=True),
            collate_fn=dict(type='pseudo_collate'),
        ),
        optim_wrapper=dict(optimizer=dict(type='AdamW', lr=0.05)),
        param_scheduler=[
            dict(type='LinearLR', start_factor=0.5, by_epoch=False, begin=0, end=2),
            dict(type='CosineAnnealingLR', by_epoch=False, begin=2, end=6, T_max=4),
        ],
        train_cfg=dict(by_epoch=False, max_iters=max_iters),
        default_hooks=dict(
            checkpoint=dict(type='CheckpointHook', interval=2, by_epoch=False),
            logger=dict(type='LoggerHook', interval=1),
        ),
        custom_hooks=[dict(type=SafeCheckpointHook)],
        randomness=dict(seed=0),
        default_scope='mmrefvlm',
        # unique names: two runners made in the same second must not share MMEngine's globals
        experiment_name=f'ckpt_{next(_RUN_IDS)}',
        **kwargs,
    )


def test_encode_decode_roundtrip():
    buf = HistoryBuffer([1.0, 2.5], [1, 2])
    obj = {'a': buf, 'b': np.arange(3, dtype=np.int16), 'c': np.float64(0.1), 'd': [(1, 'x')]}
    enc = encode_safe(obj)
    path = 'tmp_safe.pth'
    try:
        torch.save(enc, path)
        dec = decode_safe(torch.load(path, weights_only=True))
    finally:
        os.remove(path)
    assert np.array_equal(dec['a']._log_history, buf._log_history)
    assert dec['a'].mean() == buf.mean()
    assert dec['b'].dtype == np.int16 and dec['b'].tolist() == [0, 1, 2]
    assert dec['c'] == np.float64(0.1) and isinstance(dec['c'], np.float64)
    assert dec['d'] == [(1, 'x')]
    with pytest.raises(TypeError, match='weights-only'):
        encode_safe({'x': object()})


def test_resume_is_exact_and_weights_only(tmp_path):
    full = _runner(str(tmp_path / 'full'), 6)
    full.train()
    w_full = full.model.linear.weight.detach().clone()

    part = _runner(str(tmp_path / 'part'), 6)
    part.train_loop._max_iters = 4  # stop early, as if killed after the iter-4 checkpoint
    part.train()
    ckpt = str(tmp_path / 'part' / 'iter_4.pth')
    # Our checkpoints are loadable with weights_only=True, no allow-listing needed.
    raw = torch.load(ckpt, weights_only=True)
    assert raw['meta']['iter'] == 4

    resumed = _runner(str(tmp_path / 'part'), 6, resume=True, load_from=ckpt)
    resumed.train()
    assert resumed.iter == 6
    assert torch.equal(resumed.model.linear.weight, w_full)
    lr_full = full.optim_wrapper.get_lr()['lr'][0]
    assert resumed.optim_wrapper.get_lr()['lr'][0] == pytest.approx(lr_full, rel=0, abs=0)
    hist = resumed.message_hub.get_scalar('train/loss')
    assert len(hist._log_history) == 6  # logged losses carried over from iterations 1-4


def test_load_from_pth_and_safetensors(tmp_path):
    src = _runner(str(tmp_path / 'src'), 4)
    src.train()
    w = src.model.linear.weight.detach().clone()
    from safetensors.torch import save_file

    st = str(tmp_path / 'w.safetensors')
    save_file({k: v.contiguous() for k, v in src.model.state_dict().items()}, st)
    for path in (str(tmp_path / 'src' / 'iter_4.pth'), st):
        r = _runner(str(tmp_path / 'dst'), 4, load_from=path)
        r.load_or_resume()
        assert torch.equal(r.model.linear.weight, w)


class _Evil:
    def __reduce__(self):
        return (os.system, ('echo pwned > /dev/null',))


def test_pickle_with_code_is_refused(tmp_path):
    path = str(tmp_path / 'evil.pth')
    with open(path, 'wb') as f:
        pickle.dump({'state_dict': {}, 'x': _Evil()}, f)
    with pytest.raises(UnsafeCheckpointError, match='weights_only=True'):
        load_state_file(path)
    r = _runner(str(tmp_path / 'w'), 4, load_from=path)
    with pytest.raises(UnsafeCheckpointError):
        r.load_or_resume()


def test_missing_file():
    with pytest.raises(FileNotFoundError):
        load_state_file(osp.join('no', 'such.pth'))
