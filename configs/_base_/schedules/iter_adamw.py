# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
# AdamW, weight decay 0, grad clip 1, linear warm-up over 3 % of the iterations then cosine to 0
# (REF-VLM App. D, Table 14). Stage configs set `lr` and `max_iters` and re-derive the schedule.
from mmengine.optim import CosineAnnealingLR, LinearLR
from torch.optim import AdamW

from mmrefvlm.engine import FastResumeIterBasedTrainLoop, NaNGuardOptimWrapper

lr = 2e-6
max_iters = 10000
warmup_ratio = 0.03
val_interval = 1000

# A step whose loss is not finite on any rank is skipped on every rank and logged.
optim_wrapper = dict(
    type=NaNGuardOptimWrapper,
    action='skip',
    max_consecutive=10,
    optimizer=dict(type=AdamW, lr=lr, betas=(0.9, 0.999), weight_decay=0.0),
    clip_grad=dict(max_norm=1.0, error_if_nonfinite=False),
)
param_scheduler = [
    dict(
        type=LinearLR,
        start_factor=1e-5,
        by_epoch=False,
        begin=0,
        end=max(1, int(warmup_ratio * max_iters)),
    ),
    dict(
        type=CosineAnnealingLR,
        by_epoch=False,
        eta_min=0.0,
        begin=max(1, int(warmup_ratio * max_iters)),
        end=max_iters,
        T_max=max_iters - max(1, int(warmup_ratio * max_iters)),
    ),
]
# resume moves the sampler instead of re-loading the consumed batches
train_cfg = dict(type=FastResumeIterBasedTrainLoop, max_iters=max_iters, val_interval=val_interval)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
