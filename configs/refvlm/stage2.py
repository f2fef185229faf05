# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
# REF-VLM stage 2 (App. D, Table 14): LLM + projector + box and mask decoders trained, VPT on,
# encoders frozen; AdamW lr 2e-6, warm-up 3 %, cosine, wd 0, clip 1, bf16, batch 16 per GPU.
#   python tools/train.py configs/refvlm/stage2.py               (1 GPU)
#   torchrun --nproc_per_node 8 tools/train.py configs/refvlm/stage2.py --launcher pytorch
from mmengine.config import read_base
from mmengine.optim import CosineAnnealingLR, LinearLR

with read_base():
    from .._base_.datasets.vt_instruct import *  # noqa: F401,F403
    from .._base_.default_runtime import *  # noqa: F401,F403
    from .._base_.models.refvlm_7b import *  # noqa: F401,F403
    from .._base_.schedules.iter_adamw import *  # noqa: F401,F403

from mmrefvlm.engine import FastResumeIterBasedTrainLoop, NaNGuardAmpOptimWrapper
from mmrefvlm.evaluation import RECMetric, RESMetric, TRPParseMetric

# --- schedule knobs ---
lr = 2e-6
max_iters = 63000  # ~1 epoch of 8.09 M samples at 8 GPUs x 16
warmup_iters = int(0.03 * max_iters)
stage1_checkpoint = None  # e.g. 'work_dirs/stage1/iter_xxx.pth' (projector weights)

optim_wrapper.optimizer.lr = lr
optim_wrapper.type = NaNGuardAmpOptimWrapper  # bf16 autocast on GPU, non-finite steps skipped
optim_wrapper.dtype = 'bfloat16'
param_scheduler = [
    dict(type=LinearLR, start_factor=1e-5, by_epoch=False, begin=0, end=warmup_iters),
    dict(
        type=CosineAnnealingLR,
        by_epoch=False,
        eta_min=0.0,
        begin=warmup_iters,
        end=max_iters,
        T_max=max_iters - warmup_iters,
    ),
]
train_cfg = dict(type=FastResumeIterBasedTrainLoop, max_iters=max_iters, val_interval=5000)
load_from = stage1_checkpoint
env_cfg.dist_cfg = dict(backend='nccl')
model_wrapper_cfg = dict(type='MMDistributedDataParallel', find_unused_parameters=False)

val_evaluator = [dict(type=RECMetric), dict(type=RESMetric), dict(type=TRPParseMetric)]
test_evaluator = val_evaluator
