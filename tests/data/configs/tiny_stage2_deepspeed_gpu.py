# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
# tiny_stage2_gpu.py through MMEngine's FlexibleRunner with DeepSpeed ZeRO-2 (bf16; one process
# per GPU, `torchrun ... --launcher pytorch`), as configs/refvlm/stage2_deepspeed.py does for the
# paper model. The optimizer is torch's AdamW (no DeepSpeed op to compile). GPU test only.
from mmengine.config import read_base

with read_base():
    from .tiny_stage2_gpu import *  # noqa: F401,F403

max_iters = 12
ckpt_interval = 6
runner_type = 'FlexibleRunner'
strategy = dict(
    type='DeepSpeedStrategy',
    bf16=dict(enabled=True),
    gradient_clipping=1.0,
    train_micro_batch_size_per_gpu=train_dataloader.batch_size,
    zero_allow_untested_optimizer=True,
    zero_optimization=dict(stage=2, overlap_comm=False, contiguous_gradients=True),
)
optim_wrapper = dict(type='DeepSpeedOptimWrapper', optimizer=optim_wrapper.optimizer)
model_wrapper_cfg = None
env_cfg.dist_cfg = dict(backend='nccl')
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=max_iters + 1)
default_hooks.checkpoint.update(interval=ckpt_interval, max_keep_ckpts=-1)
custom_hooks = [h for h in custom_hooks if 'DumpStateDict' not in str(h['type'])]
