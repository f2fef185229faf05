# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
# SAM as the `mask` decoder of the tiny demo model, on CPU: the demo stage-2 config with its
# MaskFormer decoder swapped for a tiny random SAM (64 px input, 32-d prompts) by config alone,
# trained on the demo's `res` records. A smoke test of the plugin (random SAM weights learn
# little); pass an official-layout checkpoint with
#   --cfg-options model.unit_decoders.mask.checkpoint=PATH
#   python tools/train.py projects/sam_plugin/configs/refvlm_tiny_sam_demo.py
#   python tools/test.py projects/sam_plugin/configs/refvlm_tiny_sam_demo.py CHECKPOINT
from mmengine.config import read_base
from mmengine.dataset import ConcatDataset, DefaultSampler

with read_base():
    from ....configs.refvlm.demo_stage2 import *  # noqa: F401,F403

from mmrefvlm.datasets import (
    BuildUnitTargets,
    FormatConversation,
    LoadRecordImage,
    PackRefVLMInputs,
    PrepareImages,
    RefVLMDataset,
    WeightedMultiDatasetSampler,
    refvlm_collate,
)
from mmrefvlm.datasets.transforms import MaskTarget
from mmrefvlm.evaluation import RESMetric
from projects.sam_plugin.sam_unit import PackSamImage, SamMaskUnitDecoder

custom_imports = dict(imports=['projects.sam_plugin.sam_unit'], allow_failed_imports=False)

# --- knobs ---
sam_image_size = 64
sam_checkpoint = None  # official-layout SAM weights of the tiny architecture, or random
tiny_sam = dict(
    vision_config=dict(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        global_attn_indexes=[1],
        image_size=sam_image_size,
        patch_size=8,
        window_size=4,
        output_channels=32,
    ),
    prompt_encoder_config=dict(mask_input_channels=8),
    mask_decoder_config=dict(
        mlp_dim=64, num_hidden_layers=2, num_attention_heads=2, iou_head_hidden_dim=32
    ),
)
max_iters = 300

# --- model: swap the MaskFormer `mask` decoder for SAM (the other decoders stay) ---
model.unit_decoders.mask = dict(
    type=SamMaskUnitDecoder, num_queries=8, sam=tiny_sam, checkpoint=sam_checkpoint, match_size=32
)

# --- data: the SAM decoder reads the square-padded image at SAM's input size ---
_load = [
    dict(type=LoadRecordImage),
    dict(
        type=PrepareImages,
        sizes=dict(vit=vit_image_size, pyramid=pyramid_image_size, sam=sam_image_size),
    ),
]
_format = dict(
    type=FormatConversation,
    tokenizer=tokenizer,
    chat_template=chat_template,
    num_image_tokens=num_image_tokens,
    num_prompt_tokens=num_prompt_tokens,
    cot=use_cot,
    max_length=max_length,
)
_targets = dict(mask=dict(type=MaskTarget, size=mask_size))
sam_train_pipeline = _load + [
    _format,
    dict(type=BuildUnitTargets, unit_targets=_targets, with_original=False),
    dict(type=PackRefVLMInputs),
    dict(type=PackSamImage, key='sam'),
]
sam_test_pipeline = _load + [
    dict(_format, predict=True),
    dict(type=BuildUnitTargets, unit_targets=_targets),
    dict(type=PackRefVLMInputs),
    dict(type=PackSamImage, key='sam'),
]

train_dataloader.sampler = dict(type=WeightedMultiDatasetSampler, ratios=[1.0])
train_dataloader.dataset = dict(
    type=ConcatDataset,
    datasets=[
        dict(
            type=RefVLMDataset,
            data_root=data_root,
            ann_file='annotations/train_res.jsonl',
            pipeline=sam_train_pipeline,
        )
    ],
)
val_dataloader = dict(
    batch_size=val_batch_size,
    num_workers=0,
    persistent_workers=False,
    sampler=dict(type=DefaultSampler, shuffle=False),
    collate_fn=dict(type=refvlm_collate),
    dataset=dict(
        type=RefVLMDataset,
        data_root=data_root,
        ann_file='annotations/val_res.jsonl',
        pipeline=sam_test_pipeline,
        test_mode=True,
    ),
)
test_dataloader = val_dataloader
val_evaluator = [dict(type=RESMetric)]
test_evaluator = val_evaluator

param_scheduler[1].update(end=max_iters, T_max=max_iters - param_scheduler[1].begin)
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=max_iters)
default_hooks.checkpoint.interval = max_iters
