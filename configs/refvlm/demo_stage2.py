# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
# The embedded demo: stage 2 (LLM + projector + decoders, visual prompts) with tiny
# random-initialised models on the generated demo dataset, on CPU. To show every unit learning in
# one short run, the keypoint and depth decoders (stage 3 in the paper) train jointly here.
#   python tools/misc/make_demo_data.py --out data/demo
#   python tools/train.py configs/refvlm/demo_stage2.py
from mmengine.config import read_base
from mmengine.optim import CosineAnnealingLR, LinearLR

with read_base():
    from .._base_.datasets.demo import *  # noqa: F401,F403
    from .._base_.default_runtime import *  # noqa: F401,F403
    from .._base_.models.refvlm_tiny import *  # noqa: F401,F403
    from .._base_.schedules.iter_adamw import *  # noqa: F401,F403

from mmrefvlm.engine import FastResumeIterBasedTrainLoop
from mmrefvlm.evaluation import (
    CaptionMetric,
    DepthMetric,
    GRESMetric,
    InteractiveGroundingMetric,
    KeypointMetric,
    RECMetric,
    RESMetric,
    TRPParseMetric,
    VQAMetric,
)

# --- schedule knobs ---
lr = 1e-3
max_iters = 4200
warmup_iters = 100

optim_wrapper.optimizer.lr = lr
param_scheduler = [
    dict(type=LinearLR, start_factor=0.01, by_epoch=False, begin=0, end=warmup_iters),
    dict(
        type=CosineAnnealingLR,
        by_epoch=False,
        eta_min=lr * 0.01,
        begin=warmup_iters,
        end=max_iters,
        T_max=max_iters - warmup_iters,
    ),
]
train_cfg = dict(type=FastResumeIterBasedTrainLoop, max_iters=max_iters, val_interval=max_iters)
default_hooks.checkpoint.interval = 1000
default_hooks.logger.interval = 50

# The LLM's cross-entropy weighted 5x (the paper's stage 2 uses 1): the LLM is shared by the text
# loss and every decoder's loss, and with AdamW its per-parameter step size adapts to the
# decoders' much larger gradients (decoder losses ~8 vs CE ~0.2 here), which starved the text-only
# decisions of a from-scratch LLM. With 1, GRES N-acc (the "no target" answer) was 0-39 % in the
# last runs; with 5 or 10, 93-97 % in three runs, and REC / RES / CIDEr / PCK rose as well.
model.loss_weights = dict(llm=5.0, box=1.0, mask=1.0, keypoint=1.0, depth=1.0)

val_evaluator = [
    dict(type=RECMetric),
    dict(type=RESMetric),
    dict(type=GRESMetric),
    dict(type=InteractiveGroundingMetric),
    dict(type=KeypointMetric, sigmas=0.1, tasks=('keypoint', 'ig_keypoint')),
    dict(type=DepthMetric),
    dict(type=VQAMetric),
    dict(type=CaptionMetric),
    dict(type=TRPParseMetric),
]
test_evaluator = val_evaluator
