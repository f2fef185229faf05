# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
# REF-VLM stage 3 with SAM as the mask decoder (App. C.2, Table 12 `sam_vit_l`; App. D, Table 14):
# the stage-2 model with its MaskFormer `mask` decoder swapped for SAM ViT-L by config alone. The
# `<REF>` state -> MLP(4096 -> 4096 -> 256) is SAM's sparse prompt; SAM's image encoder is frozen,
# its mask decoder trains with the LLM, projector and VPT path; focal x 20 + dice x 1 with grouped
# matching; lr 2e-5, 5 epochs, batch 16 per GPU on 8 GPUs, bf16.
#   torchrun --nproc_per_node 8 tools/train.py configs/refvlm/stage3_sam.py --launcher pytorch
# The decoder comes from the plugin `projects/sam_plugin` (loaded through `custom_imports`); SAM
# weights are the official checkpoint, read weights-only from a local path.
from mmengine.config import read_base
from mmengine.dataset import ConcatDataset, DefaultSampler

with read_base():
    from .stage2 import *  # noqa: F401,F403

from mmrefvlm.datasets import (
    BuildUnitTargets,
    FormatConversation,
    LoadRecordImage,
    PackRefVLMInputs,
    PrepareImages,
    RefVLMDataset,
    WeightedMultiDatasetSampler,
)
from mmrefvlm.datasets.transforms import MaskTarget
from mmrefvlm.evaluation import RESMetric, TRPParseMetric
from projects.sam_plugin.sam_unit import PackSamImage, SamMaskUnitDecoder

custom_imports = dict(imports=['projects.sam_plugin.sam_unit'], allow_failed_imports=False)

# --- knobs ---
sam_checkpoint = checkpoint_root + '/sam_vit_l_0b3195.pth'  # official segment-anything file
stage2_checkpoint = 'work_dirs/stage2/iter_63000.pth'
sam_image_size = 1024
lr = 2e-5
# Stage3-SAM data (Table 18): RefCOCO/+/g and GranD-f here (COCO-REM, ADE20k and CityScapes
# have no converter yet). Set samples_per_epoch to the size of your converted mix.
samples_per_epoch = 400_000
num_epochs = 5
global_batch = 8 * 16
max_iters = num_epochs * samples_per_epoch // global_batch
warmup_iters = int(0.03 * max_iters)
train_files = {
    'refcoco/refcoco_train_res.jsonl': 1,
    'refcoco/refcoco+_train_res.jsonl': 1,
    'refcoco/refcocog_train_res.jsonl': 1,
    'grandf/grandf_train_gcg_mask.jsonl': 1,
}
val_files = ['refcoco/refcoco_val_res.jsonl']

# --- model: SAM ViT-L replaces the MaskFormer mask decoder; the box decoder is not trained ---
model.unit_decoders = dict(
    mask=dict(
        type=SamMaskUnitDecoder,
        num_queries=30,
        sam='sam_vit_l',
        checkpoint=sam_checkpoint,
        freeze_image_encoder=True,
        train_mask_decoder=True,
    )
)
model.loss_weights = dict(llm=1.0, mask=1.0)
load_from = stage2_checkpoint  # LLM, projector (the MaskFormer weights are not in this model)

# --- data: PrepareImages adds the 1024 px square frame; PackSamImage hands it to the decoder ---
_load = [
    dict(type=LoadRecordImage),
    dict(
        type=PrepareImages,
        sizes=dict(vit=vit_image_size, pyramid=pyramid_image_size, sam=sam_image_size),
    ),
]
_tokenize = dict(
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
    _tokenize,
    dict(type=BuildUnitTargets, unit_targets=_targets, with_original=False),
    dict(type=PackRefVLMInputs),
    dict(type=PackSamImage, key='sam'),
]
sam_test_pipeline = _load + [
    dict(_tokenize, predict=True),
    dict(type=BuildUnitTargets, unit_targets=_targets),
    dict(type=PackRefVLMInputs),
    dict(type=PackSamImage, key='sam'),
]
train_dataloader.sampler = dict(type=WeightedMultiDatasetSampler, ratios=list(train_files.values()))
train_dataloader.dataset = dict(
    type=ConcatDataset,
    datasets=[
        dict(
            type=RefVLMDataset,
            data_root=data_root,
            ann_file=f,
            pipeline=sam_train_pipeline,
            skip_bad_samples=True,
        )
        for f in train_files
    ],
)
val_dataloader = dict(
    batch_size=val_batch_size,
    num_workers=2,
    persistent_workers=False,
    sampler=dict(type=DefaultSampler, shuffle=False),
    collate_fn=train_dataloader.collate_fn,
    dataset=dict(
        type=ConcatDataset,
        datasets=[
            dict(
                type=RefVLMDataset,
                data_root=data_root,
                ann_file=f,
                pipeline=sam_test_pipeline,
                test_mode=True,
            )
            for f in val_files
        ],
    ),
)
test_dataloader = val_dataloader

# --- schedule (Table 14: AdamW, lr 2e-5, warm-up 3 %, cosine, wd 0, clip 1, bf16) ---
optim_wrapper.optimizer.lr = lr
param_scheduler[0].end = warmup_iters
param_scheduler[1].update(begin=warmup_iters, end=max_iters, T_max=max_iters - warmup_iters)
train_cfg.max_iters = max_iters
val_evaluator = [dict(type=RESMetric), dict(type=TRPParseMetric)]
test_evaluator = val_evaluator
