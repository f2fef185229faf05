# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
# VT-Instruct-style stage-2 mix from converted public datasets (tools/dataset_converters/, see
# docs/converters.md). Every path is relative to `data_root`; edit the knobs, never absolute paths.
from mmengine.config import read_base
from mmengine.dataset import ConcatDataset, DefaultSampler

from mmrefvlm.datasets import (
    BuildUnitTargets,
    FormatConversation,
    LoadRecordDepth,
    LoadRecordImage,
    PackRefVLMInputs,
    PrepareImages,
    RasterizeVisualPrompts,
    RefVLMDataset,
    WeightedMultiDatasetSampler,
    refvlm_collate,
)
from mmrefvlm.datasets.transforms import BoxTarget, DepthTarget, KeypointTarget, MaskTarget

with read_base():  # tokenizer and token counts must match the model
    from ..models.refvlm_7b import (
        mask_size,
        num_image_tokens,
        num_prompt_tokens,
        pyramid_image_size,
        tokenizer,
        vit_image_size,
    )

# --- user-facing knobs ---
data_root = 'data/vt_instruct'
train_batch_size = 16  # per GPU (App. D, Table 14)
val_batch_size = 8
use_cot = True  # VD-CoT before every answer
chat_template = 'vicuna'
max_length = 2048
# tools/dataset_converters/build_vt_instruct.py links the public image folders under
# data_root/images/ (symbolic links to wherever the downloads live), so the record paths resolve
# outside data_root; records from other sources should be read with this False (docs/prepare.md)
allow_outside_data_root = True
# annotation file (relative to data_root) -> sampling ratio; ratios follow the stage-2 task shares
# of Table 17 (referring 40.6 %, understanding 26.2 %, open-vocabulary 16.3 %, GCG 14.0 %,
# interactive 2.9 %)
train_files = {
    'refcoco/refcoco_train_rec.jsonl': 10,
    'refcoco/refcoco_train_res.jsonl': 10,
    'refcoco/refcoco+_train_rec.jsonl': 5,
    'refcoco/refcoco+_train_res.jsonl': 5,
    'refcoco/refcocog_train_rec.jsonl': 5,
    'refcoco/refcocog_train_res.jsonl': 5,
    'grefcoco/grefcoco_train.jsonl': 0.6,
    'llava/llava_v1_5_mix665k_vqa.jsonl': 13.1,
    'coco/coco_caption_train.jsonl': 13.1,
    'coco/coco_train_ovd.jsonl': 8.15,
    'coco/coco_train_ovs.jsonl': 8.15,
    'flickr30k/flickr30k_train_gcg_box.jsonl': 7.0,
    'grandf/grandf_train_gcg_mask.jsonl': 7.0,
    'coco_interactive/cocoint_train_ig_box.jsonl': 1.45,
    'coco_interactive/cocoint_train_ig_mask.jsonl': 1.45,
}
val_files = ['refcoco/refcoco_val_rec.jsonl', 'refcoco/refcoco_val_res.jsonl']
unit_targets = dict(
    box=dict(type=BoxTarget),
    mask=dict(type=MaskTarget, size=mask_size),
    keypoint=dict(type=KeypointTarget, num_keypoints=17),
    depth=dict(type=DepthTarget, size=mask_size),
)

_load = [
    dict(type=LoadRecordImage),
    dict(type=LoadRecordDepth),
    dict(type=PrepareImages, sizes=dict(vit=vit_image_size, pyramid=pyramid_image_size)),
    dict(type=RasterizeVisualPrompts, size=vit_image_size, point_radius=10.0, scribble_width=5.0),
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
train_pipeline = _load + [
    _tokenize,
    dict(type=BuildUnitTargets, unit_targets=unit_targets, with_original=False),
    dict(type=PackRefVLMInputs),
]
test_pipeline = _load + [
    dict(_tokenize, predict=True),
    dict(type=BuildUnitTargets, unit_targets=unit_targets),
    dict(type=PackRefVLMInputs),
]

train_dataloader = dict(
    batch_size=train_batch_size,
    num_workers=4,
    persistent_workers=True,
    sampler=dict(type=WeightedMultiDatasetSampler, ratios=list(train_files.values())),
    collate_fn=dict(type=refvlm_collate),
    dataset=dict(
        type=ConcatDataset,
        datasets=[
            dict(
                type=RefVLMDataset,
                data_root=data_root,
                ann_file=f,
                pipeline=train_pipeline,
                skip_bad_samples=True,
                allow_outside_data_root=allow_outside_data_root,
            )
            for f in train_files
        ],
    ),
)
val_dataloader = dict(
    batch_size=val_batch_size,
    num_workers=2,
    persistent_workers=False,
    sampler=dict(type=DefaultSampler, shuffle=False),
    collate_fn=dict(type=refvlm_collate),
    dataset=dict(
        type=ConcatDataset,
        datasets=[
            dict(
                type=RefVLMDataset,
                data_root=data_root,
                ann_file=f,
                pipeline=test_pipeline,
                test_mode=True,
                allow_outside_data_root=allow_outside_data_root,
            )
            for f in val_files
        ],
    ),
)
test_dataloader = val_dataloader
