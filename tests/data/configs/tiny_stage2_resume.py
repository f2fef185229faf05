# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
# The SIGKILL-resume test config: tiny_stage2_dist.py with the sampler of the real configs
# (WeightedMultiDatasetSampler, seed synchronised from `randomness.seed`), a checkpoint every
# `ckpt_interval` iterations and a KillAtIterHook that is off unless the test sets
# `custom_hooks.<i>.kill_at` with --cfg-options.
from mmengine.config import read_base
from mmengine.optim import CosineAnnealingLR, LinearLR

with read_base():
    from .tiny_stage2_dist import *  # noqa: F401,F403

from mmrefvlm.datasets import WeightedMultiDatasetSampler
from mmrefvlm.testing.dist_utils import KillAtIterHook

max_iters = 8
ckpt_interval = 3

train_dataloader.sampler = dict(type=WeightedMultiDatasetSampler,
                                ratios=[1.0] * len(train_dataloader.dataset.datasets))
warmup_iters = 3                # a changing lr, so the scheduler state must resume too
param_scheduler = [
    dict(type=LinearLR, start_factor=0.1, by_epoch=False, begin=0, end=warmup_iters),
    dict(type=CosineAnnealingLR, by_epoch=False, eta_min=1e-5, begin=warmup_iters, end=max_iters,
         T_max=max_iters - warmup_iters)]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=max_iters + 1)
default_hooks.checkpoint.update(interval=ckpt_interval, max_keep_ckpts=-1)
custom_hooks = custom_hooks + [dict(type=KillAtIterHook, kill_at=None)]
