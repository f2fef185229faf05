# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
# SAM4MLLM's SAM, fine-tuned on its own before the MLLM (the paper fine-tunes EfficientViT-SAM's
# decoder on COCO for one epoch): a tiny random SAM (64 px, patch 4, 64-d) learns to turn box +
# labelled-point prompts into masks on the demo's training images (a random object per `res`
# record, its box jittered by up to 10 %, 0-4 positive and 0-3 negative points). Nothing is
# pretrained offline, so its image encoder trains too. The SAM4MLLM configs load the result
# (`sam_checkpoint`) frozen.
#   python tools/train.py projects/sam4mllm/configs/sam4mllm_tiny_sam_demo.py
from mmengine.config import read_base
from mmengine.dataset import DefaultSampler
from mmengine.optim import CosineAnnealingLR, LinearLR

with read_base():
    from ....configs._base_.default_runtime import *  # noqa: F401,F403
    from ....configs._base_.schedules.iter_adamw import *  # noqa: F401,F403

from mmrefvlm.datasets import LoadRecordImage, PrepareImages, RefVLMDataset, refvlm_collate
from mmrefvlm.engine import FastResumeIterBasedTrainLoop
from projects.sam4mllm.sam4mllm_seg import (
    PromptableSam,
    PromptIoUMetric,
    SamPromptSample,
    SamPromptSegmentor,
)

custom_imports = dict(imports=['projects.sam4mllm.sam4mllm_seg'], allow_failed_imports=False)

# --- knobs ---
data_root = 'data/demo'
sam_image_size = 64
mask_size = 64
tiny_sam = dict(
    vision_config=dict(
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        global_attn_indexes=[1],
        image_size=sam_image_size,
        patch_size=4,
        window_size=8,
        output_channels=64,
    ),
    prompt_encoder_config=dict(mask_input_channels=8),
    mask_decoder_config=dict(
        mlp_dim=128, num_hidden_layers=2, num_attention_heads=4, iou_head_hidden_dim=64
    ),
)
lr = 1e-3
max_iters = 500
warmup_iters = 25
batch_size = 16

# --- model ---
model = dict(
    type=SamPromptSegmentor,
    sam=dict(type=PromptableSam, sam=tiny_sam),
    freeze_image_encoder=False,
)

# --- data ---
_pipeline = [
    dict(type=LoadRecordImage),
    dict(type=PrepareImages, sizes=dict(sam=sam_image_size)),
    dict(type=SamPromptSample, size=mask_size),
]
train_dataloader = dict(
    batch_size=batch_size,
    num_workers=0,
    persistent_workers=False,
    sampler=dict(type=DefaultSampler, shuffle=True),
    collate_fn=dict(type=refvlm_collate),
    dataset=dict(
        type=RefVLMDataset,
        data_root=data_root,
        ann_file='annotations/train_res.jsonl',
        pipeline=_pipeline,
    ),
)
val_dataloader = dict(
    batch_size=32,
    num_workers=0,
    persistent_workers=False,
    sampler=dict(type=DefaultSampler, shuffle=False),
    collate_fn=dict(type=refvlm_collate),
    dataset=dict(
        type=RefVLMDataset,
        data_root=data_root,
        ann_file='annotations/val_res.jsonl',
        pipeline=_pipeline,
        test_mode=True,
    ),
)
test_dataloader = val_dataloader
val_evaluator = [dict(type=PromptIoUMetric)]
test_evaluator = val_evaluator

# --- schedule ---
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
default_hooks.checkpoint.interval = max_iters
default_hooks.logger.interval = 50
