# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
# tiny_stage2_gpu.py through MMEngine's FlexibleRunner with PyTorch FSDP (full shard, bf16 mixed
# precision; one process per GPU, `torchrun ... --launcher pytorch`), as configs/refvlm/stage2_fsdp.py
# does for the paper model. Checkpoints hold the full (gathered) state dict. GPU test only.
from mmengine.config import read_base

with read_base():
    from .tiny_stage2_gpu import *  # noqa: F401,F403

from mmrefvlm.engine import DeviceAwareFSDPStrategy, NaNGuardOptimWrapper

max_iters = 12
ckpt_interval = 6
runner_type = 'FlexibleRunner'
strategy = dict(
    # MMEngine's FSDPStrategy cannot resume (argument order of FSDP.optim_state_dict_to_load);
    # the subclass fixes it and is the one configs/_base_/strategies/fsdp.py uses
    type=DeviceAwareFSDPStrategy,
    state_dict_cfg='full',
    model_wrapper=dict(
        use_orig_params=True,
        mixed_precision=dict(
            param_dtype='bfloat16', reduce_dtype='bfloat16', buffer_dtype='bfloat16'
        ),
    ),
)
optim_wrapper = dict(  # clipping by the global norm over the shards
    type=NaNGuardOptimWrapper,
    sharded_grads=True,
    optimizer=optim_wrapper.optimizer,
    clip_grad=dict(max_norm=1.0),
)
model_wrapper_cfg = None
env_cfg.dist_cfg = dict(backend='nccl')
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=max_iters + 1)
default_hooks.checkpoint.update(interval=ckpt_interval, max_keep_ckpts=-1)
# rank-state dumps read the unwrapped module, which FSDP flattens: not used here
custom_hooks = [h for h in custom_hooks if 'DumpStateDict' not in str(h['type'])]
