# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
# Stage 2 with DeepSpeed ZeRO-2 through MMEngine's FlexibleRunner (GPU only; needs
# `pip install deepspeed`, see requirements/optional.txt). Not run in CI.
#   torchrun --nproc_per_node 8 tools/train.py configs/refvlm/stage2_deepspeed.py --launcher pytorch
from mmengine.config import read_base

with read_base():
    from .stage2 import *  # noqa: F401,F403

runner_type = 'FlexibleRunner'
strategy = dict(
    type='DeepSpeedStrategy',
    bf16=dict(enabled=True),
    gradient_clipping=1.0,
    train_micro_batch_size_per_gpu=train_batch_size,
    zero_optimization=dict(
        stage=2,
        overlap_comm=True,
        contiguous_gradients=True,
        reduce_bucket_size='auto',
        allgather_bucket_size=5e8,
    ),
)
optim_wrapper = dict(type='DeepSpeedOptimWrapper', optimizer=optim_wrapper.optimizer)
model_wrapper_cfg = None
