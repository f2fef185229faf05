# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
from mmengine.hooks import (
    CheckpointHook,
    DistSamplerSeedHook,
    IterTimerHook,
    LoggerHook,
    ParamSchedulerHook,
)
from mmengine.visualization import LocalVisBackend, Visualizer

from mmrefvlm.engine.hooks import SafeCheckpointHook

default_scope = 'mmrefvlm'

default_hooks = dict(
    timer=dict(type=IterTimerHook),
    logger=dict(type=LoggerHook, interval=10),
    param_scheduler=dict(type=ParamSchedulerHook),
    checkpoint=dict(type=CheckpointHook, by_epoch=False, interval=500, max_keep_ckpts=2),
    sampler_seed=dict(type=DistSamplerSeedHook),
)
# Checkpoints are written weights-only-safe (loaded with torch.load(weights_only=True)).
custom_hooks = [dict(type=SafeCheckpointHook)]

env_cfg = dict(
    cudnn_benchmark=False,
    mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0),
    dist_cfg=dict(backend='nccl'),
)
# Add dict(type='TensorboardVisBackend') (needs `pip install tensorboard`) for TensorBoard logs.
vis_backends = [dict(type=LocalVisBackend)]
# no fixed `name`: MMEngine then names it after the run, so two runs in one process (train then
# test, tests) do not share one instance and its log folder
visualizer = dict(type=Visualizer, vis_backends=vis_backends)
log_processor = dict(by_epoch=False, window_size=10)
log_level = 'INFO'
load_from = None
resume = False
randomness = dict(seed=0, deterministic=False)
