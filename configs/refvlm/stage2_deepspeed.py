# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
# Stage 2 with DeepSpeed ZeRO-2 through MMEngine's FlexibleRunner. Needs deepspeed==0.16.2 (see
# requirements/optional.txt and docs/get_started.md: later releases break MMEngine 0.10.7's
# strategy). Not run in CI; its fp32 CPU twin tests/data/configs/tiny_stage2_deepspeed.py is
# tested on 2 CPU ranks where deepspeed is installed (pytest -m slow -k deepspeed).
# MMEngine's DeepSpeedStrategy loads `load_from` / `--resume` only from DeepSpeed checkpoint
# folders: starting from stage 1's .pth file (`load_from = stage1_checkpoint`) fails there; use
# stage2_fsdp.py (or stage2.py) for that start.
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
