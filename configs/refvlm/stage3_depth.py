# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
# Stage 3, depth: a <REF>-conditioned dense depth decoder (own `depth` unit) trained with the LLM
# and projector on NYU-depth-v2 records (tools/dataset_converters/nyu_depth.py); lr 2e-5 (the
# stage-3 rate of Table 14; the paper reports no depth numbers, and the authors' depth decoder does
# not run).
from mmengine.config import read_base
from mmengine.dataset import ConcatDataset, DefaultSampler

with read_base():
    from .stage2 import *  # noqa: F401,F403

from mmrefvlm.datasets import RefVLMDataset, WeightedMultiDatasetSampler
from mmrefvlm.evaluation import DepthMetric
from mmrefvlm.models.unit_decoders import DepthUnitDecoder

# --- knobs ---
stage2_checkpoint = 'work_dirs/stage2/iter_63000.pth'
lr = 2e-5
max_iters = 3000
warmup_iters = int(0.03 * max_iters)

model.unit_decoders = dict(
    depth=dict(
        type=DepthUnitDecoder,
        num_queries=10,
        d_model=256,
        pyramid_channels=pyramid_channels,
        clip_channels=clip_channels,
        pixel_levels=(0, 1, 2),
        pixel_use_clip=True,
        fpn_dim=256,
        pixel_dim=256,
    )
)
model.loss_weights = dict(llm=1.0, depth=1.0)
load_from = stage2_checkpoint
train_dataloader.sampler = dict(type=WeightedMultiDatasetSampler, ratios=[1.0])
train_dataloader.dataset = dict(
    type=ConcatDataset,
    datasets=[
        dict(
            type=RefVLMDataset,
            data_root=data_root,
            ann_file='nyu/nyu_train_depth.jsonl',
            pipeline=train_pipeline,
            skip_bad_samples=True,
        )
    ],
)
val_dataloader = dict(
    batch_size=val_batch_size,
    num_workers=2,
    sampler=dict(type=DefaultSampler, shuffle=False),
    collate_fn=train_dataloader.collate_fn,
    dataset=dict(
        type=RefVLMDataset,
        data_root=data_root,
        ann_file='nyu/nyu_test_depth.jsonl',
        pipeline=test_pipeline,
        test_mode=True,
    ),
)
test_dataloader = val_dataloader

optim_wrapper.optimizer.lr = lr
param_scheduler[0].end = warmup_iters
param_scheduler[1].update(begin=warmup_iters, end=max_iters, T_max=max_iters - warmup_iters)
train_cfg.max_iters = max_iters
val_evaluator = [dict(type=DepthMetric)]
test_evaluator = val_evaluator
