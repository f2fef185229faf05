# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
# REF-VLM stage 3, keypoints (App. D, Table 14): a keypoint decoder (own `keypoint` unit, 17 COCO
# keypoints) initialised from the stage-2 box decoder; LLM + projector + keypoint decoder train;
# lr 2e-5, 5 epochs of COCO keypoints (~109 k samples).
from mmengine.config import read_base
from mmengine.dataset import ConcatDataset, DefaultSampler

with read_base():
    from .stage2 import *  # noqa: F401,F403

from mmrefvlm.datasets import RefVLMDataset, WeightedMultiDatasetSampler
from mmrefvlm.engine.hooks import InitUnitDecoderHook
from mmrefvlm.evaluation import KeypointMetric
from mmrefvlm.models.unit_decoders import KeypointUnitDecoder, KeypointUnitHead

# --- knobs ---
stage2_checkpoint = 'work_dirs/stage2/iter_63000.pth'
lr = 2e-5
max_iters = 4300  # 5 epochs x 109 k samples / (8 GPUs x 16)
warmup_iters = int(0.03 * max_iters)

model.unit_decoders = dict(
    keypoint=dict(
        type=KeypointUnitDecoder,
        num_queries=100,
        num_keypoints=17,
        d_model=256,
        pyramid_channels=pyramid_channels,
        clip_channels=clip_channels,
        memory=dict(levels=(0, 1, 2), use_clip=True, size=128),
        decoder=dict(num_layers=6, num_heads=8, ffn_dim=2048, dropout=0.1),
        head=dict(type=KeypointUnitHead, box_head='mlp', point_decoder=dict(num_layers=6)),
    )
)
model.loss_weights = dict(llm=1.0, keypoint=1.0)
load_from = stage2_checkpoint  # LLM, projector (the box/mask decoders are not in this model)
custom_hooks = custom_hooks + [
    dict(type=InitUnitDecoderHook, checkpoint=stage2_checkpoint, src='box', dst='keypoint')
]
train_dataloader.sampler = dict(type=WeightedMultiDatasetSampler, ratios=[1.0])
train_dataloader.dataset = dict(
    type=ConcatDataset,
    datasets=[
        dict(
            type=RefVLMDataset,
            data_root=data_root,
            ann_file='coco/coco_train_keypoint.jsonl',
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
        ann_file='coco/coco_val_keypoint.jsonl',
        pipeline=test_pipeline,
        test_mode=True,
    ),
)
test_dataloader = val_dataloader

optim_wrapper.optimizer.lr = lr
param_scheduler[0].end = warmup_iters
param_scheduler[1].update(begin=warmup_iters, end=max_iters, T_max=max_iters - warmup_iters)
train_cfg.max_iters = max_iters
val_evaluator = [dict(type=KeypointMetric)]
test_evaluator = val_evaluator
