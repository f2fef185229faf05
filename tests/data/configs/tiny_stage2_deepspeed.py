# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
# tiny_stage2_dist.py (2 ranks with different task mixes) under DeepSpeed ZeRO-2 instead of DDP,
# float32 (stage2_deepspeed.py trains in bf16 on GPUs). Needs `pip install deepspeed`; on CPU,
# DeepSpeed compiles its shared-memory communication op once (minutes) at the first run.
from mmengine.config import read_base

with read_base():
    from .tiny_stage2_dist import *  # noqa: F401,F403

from mmrefvlm.engine import SafeCheckpointHook

runner_type = 'FlexibleRunner'
strategy = dict(
    type='DeepSpeedStrategy',
    gradient_clipping=1.0,
    zero_optimization=dict(stage=2, overlap_comm=False, contiguous_gradients=True),
)
optim_wrapper = dict(type='DeepSpeedOptimWrapper', optimizer=optim_wrapper.optimizer)
model_wrapper_cfg = None  # the strategy wraps the model
custom_hooks = [dict(type=SafeCheckpointHook)]
