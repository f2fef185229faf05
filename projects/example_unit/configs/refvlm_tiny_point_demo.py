# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
# The `point` unit plugin on the embedded demo: the tiny demo model (LLM, CLIP-ViT, ConvNeXt) with
# a `point` decoder, trained on the demo's `rec` records rewritten to one point per <REF> (the
# shape centre, keypoint 0).
#   python tools/train.py projects/example_unit/configs/refvlm_tiny_point_demo.py
#   python tools/test.py projects/example_unit/configs/refvlm_tiny_point_demo.py \
#       work_dirs/refvlm_tiny_point_demo/iter_800.pth
from mmengine.config import read_base
from mmengine.dataset import ConcatDataset, DefaultSampler
from mmengine.optim import CosineAnnealingLR, LinearLR

with read_base():
    from ....configs.refvlm.demo_stage2 import *  # noqa: F401,F403

from mmrefvlm.datasets import (
    BuildUnitTargets,
    FormatConversation,
    LoadRecordImage,
    PackRefVLMInputs,
    PrepareImages,
    RefVLMDataset,
    RemapRecordUnits,
    WeightedMultiDatasetSampler,
    refvlm_collate,
)
from projects.example_unit.point_unit import (
    PointerPointHead,
    PointMetric,
    PointTarget,
    PointUnitDecoder,
)

# Registers the plugin's classes (string types in --cfg-options, tools) before anything is built.
custom_imports = dict(imports=['projects.example_unit.point_unit'], allow_failed_imports=False)

# --- knobs ---
lr = 1e-3
max_iters = 800
warmup_iters = 50
point_source = 'keypoint'  # 'keypoint' (index 0: the shape centre), 'mask_centroid', 'box_center'

# --- model: the inherited demo model with the `point` decoder as its only decoder (keep the
# inherited ones with `model.unit_decoders.point = dict(...)`, `model.loss_weights.point = 1.0`;
# each extra decoder costs a fake-input pass per step) ---
model.unit_decoders = dict(
    point=dict(
        type=PointUnitDecoder,
        num_queries=8,
        d_model=decoder_dim,
        memory=dict(levels=(0, 1), use_clip=True, size=16),
        decoder=dict(num_layers=1, num_heads=4, ffn_dim=2 * decoder_dim, dropout=0.0),
        head=dict(type=PointerPointHead, offset_range=0.25),
    )
)
model.loss_weights = dict(llm=1.0, point=1.0)

# --- data: demo `rec` records, answers rewritten from `box` to `point` (core transform) ---
point_unit_targets = dict(point=dict(type=PointTarget, source=point_source))
_to_point = dict(
    type=RemapRecordUnits, unit_map=dict(box='point'), task='point', template_map=dict(rec='point')
)
_point_load = [
    _to_point,
    dict(type=LoadRecordImage),
    dict(type=PrepareImages, sizes=dict(vit=vit_image_size, pyramid=pyramid_image_size)),
]
_point_format = dict(
    type=FormatConversation,
    tokenizer=tokenizer,
    chat_template=chat_template,
    num_image_tokens=num_image_tokens,
    num_prompt_tokens=num_prompt_tokens,
    cot=use_cot,
    max_length=max_length,
    extra_template_dirs=['projects.example_unit.point_unit:templates'],
)
point_train_pipeline = _point_load + [
    _point_format,
    dict(type=BuildUnitTargets, unit_targets=point_unit_targets, with_original=False),
    dict(type=PackRefVLMInputs),
]
point_test_pipeline = _point_load + [
    dict(_point_format, predict=True),
    dict(type=BuildUnitTargets, unit_targets=point_unit_targets, with_original=True),
    dict(type=PackRefVLMInputs),
]

train_dataloader.sampler = dict(type=WeightedMultiDatasetSampler, ratios=[1.0])
train_dataloader.dataset = dict(
    type=ConcatDataset,
    datasets=[
        dict(
            type=RefVLMDataset,
            data_root=data_root,
            ann_file='annotations/train_rec.jsonl',
            pipeline=point_train_pipeline,
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
        ann_file='annotations/val_rec.jsonl',
        pipeline=point_test_pipeline,
        test_mode=True,
    ),
)
test_dataloader = val_dataloader
val_evaluator = [dict(type=PointMetric)]
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
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=max_iters)
default_hooks.checkpoint.interval = max_iters
default_hooks.logger.interval = 50
