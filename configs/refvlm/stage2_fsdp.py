# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
# Stage 2 with PyTorch FSDP (full shard, bf16 mixed precision) through MMEngine's FlexibleRunner.
# GPU only; not run in CI.
#   torchrun --nproc_per_node 8 tools/train.py configs/refvlm/stage2_fsdp.py --launcher pytorch
from mmengine.config import read_base

with read_base():
    from .stage2 import *  # noqa: F401,F403

runner_type = 'FlexibleRunner'
strategy = dict(
    type='FSDPStrategy',
    model_wrapper=dict(
        use_orig_params=True,
        mixed_precision=dict(
            param_dtype='bfloat16', reduce_dtype='bfloat16', buffer_dtype='bfloat16'
        ),
    ),
)
optim_wrapper = dict(
    type='OptimWrapper', optimizer=optim_wrapper.optimizer, clip_grad=dict(max_norm=1.0)
)
model_wrapper_cfg = None
