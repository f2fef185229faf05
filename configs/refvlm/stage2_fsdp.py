# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
# Stage 2 with PyTorch FSDP (full shard, bf16 mixed precision) through MMEngine's FlexibleRunner.
# The same strategy runs on GPUs (nccl) and, for CI, on 2 CPU ranks (gloo) with a tiny model
# (tests/data/configs/tiny_stage2_fsdp.py):
#   torchrun --nproc_per_node 8 tools/train.py configs/refvlm/stage2_fsdp.py --launcher pytorch
#   bash tools/dist_train.sh configs/refvlm/stage2_fsdp.py 8
from mmengine.config import read_base

with read_base():
    from .._base_.strategies.fsdp import *  # noqa: F401,F403
    from .stage2 import *  # noqa: F401,F403

from mmrefvlm.engine import NaNGuardOptimWrapper

model_wrapper_cfg = None  # the strategy wraps the model (the DDP base sets one)
# FSDP's MixedPrecision computes in bf16, so no autocast wrapper; clipping uses the global norm
optim_wrapper = dict(
    type=NaNGuardOptimWrapper,
    action='skip',
    max_consecutive=10,
    optimizer=optim_wrapper.optimizer,
    clip_grad=dict(max_norm=1.0, error_if_nonfinite=False),
)
