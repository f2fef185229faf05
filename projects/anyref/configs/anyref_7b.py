# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
# AnyRef-7B (He et al., CVPR 2024; seeds 000 / 003): LLaVA-7B (LLaMA-7B LLM, CLIP ViT-L/14 at
# 224 px = 256 image tokens, linear projector) + SAM ViT-H (image encoder frozen at 1024 px, mask
# decoder trained) + ImageBind-H's audio tower (frozen; 2-s windows, 3 embeddings per 5-s clip,
# a linear audio -> LLM projector). Answers "{expression}<obj>."; the <obj> state at its emitting
# position, refocused (lambda_f = 0.1) on the answer tokens before it with the last layer's
# attention, -> MLP gamma (4096 -> 4096 -> 256) -> SAM's sparse prompt. References between their
# begin / end tokens: a box (4 x 4 RoIAlign on the CLIP grid) or another image (its CLIP grid
# pooled 2-D to 4 x 4) as 16 <img_feat>, a sound as 3 <aud_feat>. LoRA r=8 (alpha 16) on q_proj /
# v_proj; trainable: LoRA, the new token rows, both projectors, gamma, SAM's mask decoder (CLIP,
# ImageBind, SAM's image encoder frozen). Loss 1.0 CE + 2.0 BCE + 0.5 DICE. AdamW lr 5e-5, wd 0.01,
# 200 warm-up steps then cosine, 10K steps, 8 GPUs x 6 x 8 accumulation steps, mixed precision.
#   torchrun --nproc_per_node 8 tools/train.py projects/anyref/configs/anyref_7b.py \
#       --launcher pytorch
#   python tools/analysis/count_params.py projects/anyref/configs/anyref_7b.py --meta
# Weights are local files (nothing downloads): the LLaVA-7B language model as a Llama folder, CLIP
# ViT-L/14 (224 px), the official SAM ViT-H checkpoint; LLaVA's projector via `load_from`. The
# ImageBind audio tower is built with its shapes (SpectrogramViTAudioEncoder) but its weights are
# not loaded (no converter yet): until then its rows carry random features.
from mmengine.config import read_base
from mmengine.dataset import ConcatDataset, DefaultSampler
from mmengine.optim import CosineAnnealingLR, LinearLR
from torch.optim import AdamW

with read_base():
    from ....configs._base_.default_runtime import *  # noqa: F401,F403

from mmrefvlm.datasets import (
    BuildUnitTargets,
    FormatConversation,
    LoadRecordImage,
    PrepareImages,
    RefVLMDataset,
    WeightedMultiDatasetSampler,
    refvlm_collate,
)
from mmrefvlm.datasets.transforms import MaskTarget
from mmrefvlm.engine import FastResumeIterBasedTrainLoop, NaNGuardOptimWrapper
from mmrefvlm.evaluation import RESMetric
from mmrefvlm.models import (
    CLIPViTEncoder,
    LatentEmbeddingRouter,
    MLPProjector,
    RefVLM,
    SpecialTokenRefParser,
)
from projects.anyref.anyref_seg import (
    AnyRefCaptionMetric,
    AnyRefConversation,
    AnyRefMaskDecoder,
    AudioReferenceEncoder,
    ObjAnswerFormat,
    PackAnyRefInputs,
    RefocusRefiner,
    SpectrogramViTAudioEncoder,
    VisualReferenceEncoder,
)

custom_imports = dict(imports=['projects.anyref.anyref_seg'], allow_failed_imports=False)

# --- knobs: local checkpoints and data ---
checkpoint_root = 'checkpoints'
llm_name_or_path = checkpoint_root + '/llava-7b-lightning-v1-1-llama'  # LLaVA-7B's LLM (Llama)
clip_name_or_path = checkpoint_root + '/clip-vit-large-patch14'  # 224 px
sam_checkpoint = checkpoint_root + '/sam_vit_h_4b8939.pth'  # official segment-anything file
llava_projector_checkpoint = None  # LLaVA's mm_projector as `projector.layers.0.*` weights
anyref_tokens = [
    '<obj>',
    '<img_ref>',
    '</img_ref>',
    '<img_feat>',
    '<aud_ref>',
    '</aud_ref>',
    '<aud_feat>',
]  # fmt: skip  (anyref_seg.ANYREF_TOKENS; configs are data)
ref_parser = dict(type=SpecialTokenRefParser, ref_tokens={'<obj>': 'mask'})
tokenizer = dict(source=llm_name_or_path, extra_tokens=anyref_tokens)
system_prompt = (
    'A chat between a curious user and an artificial intelligence assistant. The assistant '
    "gives helpful, detailed, and polite answers to the user's questions."
)
vit_image_size = 224
num_image_tokens = (vit_image_size // 14) ** 2  # 256
sam_image_size = 1024
mask_size = 256
ref_size = 4  # 4 x 4 tokens per visual reference
audio_windows = 3  # a 5-s clip in 2-s windows
lambda_f = 0.1
data_root = 'data'
# RES / REG data converted by tools/dataset_converters/refcoco.py. AnyRef also trains on semantic
# segmentation, image-level referring (CLIPSeg crops) and AVSBench; those converters do not exist
# yet (the demo generator's image_ref_seg / audio_ref_seg records have the same format).
train_files = {
    'records/refcoco_train_res.jsonl': 1,
    'records/refcoco+_train_res.jsonl': 1,
    'records/refcocog_train_res.jsonl': 1,
}
val_files = ['records/refcoco_val_res.jsonl']
train_batch_size = 6  # per GPU
accumulative_counts = 8
lr = 5e-5
max_iters = 10_000
warmup_iters = 200

# --- model ---
model = dict(
    type=RefVLM,
    tokenizer=tokenizer,
    llm=dict(name_or_path=llm_name_or_path, torch_dtype='bfloat16', attn_implementation='sdpa'),
    vision_encoder=dict(
        type=CLIPViTEncoder,
        name_or_path=clip_name_or_path,
        select_layer=-2,
        frozen=True,
        torch_dtype='bfloat16',
        hf_config_overrides=dict(image_size=vit_image_size),  # the checkpoint's; pinned for counts
    ),
    pyramid_encoder=None,
    projector=dict(type=MLPProjector, depth=1),  # LLaVA v1: one linear layer, trainable
    router=dict(type=LatentEmbeddingRouter, ref_position='emitting'),
    ref_parser=ref_parser,
    ref_refiner=dict(type=RefocusRefiner, lambda_f=lambda_f, ref_position='emitting'),
    input_encoders={
        '<img_feat>': dict(type=VisualReferenceEncoder, size=ref_size, pooling='2d'),
        '<aud_feat>': dict(
            type=AudioReferenceEncoder,
            encoder=dict(type=SpectrogramViTAudioEncoder, num_windows=audio_windows),
            freeze_encoder=True,
        ),
    },
    unit_decoders=dict(
        mask=dict(
            type=AnyRefMaskDecoder,
            num_queries=8,
            sam='sam_vit_h',
            checkpoint=sam_checkpoint,
            freeze_image_encoder=True,
            train_mask_decoder=True,
        )
    ),
    loss_weights=dict(llm=1.0, mask=1.0),  # CE x 1.0; BCE x 2.0 and DICE x 0.5 in the decoder
    lora=dict(r=8, lora_alpha=16, lora_dropout=0.05, target_modules=['q_proj', 'v_proj']),
    gradient_checkpointing=True,
    max_new_tokens=32,
)
load_from = llava_projector_checkpoint

# --- data ---
_load = [
    dict(type=LoadRecordImage),
    dict(type=PrepareImages, sizes=dict(vit=vit_image_size, sam=sam_image_size)),
    dict(
        type=AnyRefConversation,
        image_size=vit_image_size,
        visual_tokens=ref_size * ref_size,
        audio_tokens=audio_windows,
        system=system_prompt,
        sample_rate=16000,  # SpectrogramViTAudioEncoder's (ImageBind's)
    ),
]
_format = dict(
    type=FormatConversation,
    tokenizer=tokenizer,
    chat_template='vicuna',
    num_image_tokens=num_image_tokens,
    cot=False,
    max_length=512,
    extra_template_dirs=['projects.anyref.anyref_seg:templates'],
    answer_format=dict(type=ObjAnswerFormat),
    ref_parser=ref_parser,
)
_targets = dict(mask=dict(type=MaskTarget, size=mask_size, allow_empty=True))
train_pipeline = _load + [
    _format,
    dict(type=BuildUnitTargets, unit_targets=_targets, with_original=False),
    dict(type=PackAnyRefInputs),
]
test_pipeline = _load + [
    dict(_format, predict=True),
    dict(type=BuildUnitTargets, unit_targets=_targets),
    dict(type=PackAnyRefInputs),
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
            )
            for f in train_files
        ],
    ),
)
val_dataloader = dict(
    batch_size=4,
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
            )
            for f in val_files
        ],
    ),
)
test_dataloader = val_dataloader
val_evaluator = [dict(type=RESMetric), dict(type=AnyRefCaptionMetric, meteor=True)]
test_evaluator = val_evaluator

# --- schedule ---
optim_wrapper = dict(
    type=NaNGuardOptimWrapper,
    action='skip',
    max_consecutive=10,
    optimizer=dict(type=AdamW, lr=lr, weight_decay=0.01),
    clip_grad=dict(max_norm=1.0, error_if_nonfinite=False),
    accumulative_counts=accumulative_counts,
)
param_scheduler = [
    dict(type=LinearLR, start_factor=1e-3, by_epoch=False, begin=0, end=warmup_iters),
    dict(
        type=CosineAnnealingLR,
        T_max=max_iters - warmup_iters,
        by_epoch=False,
        begin=warmup_iters,
        end=max_iters,
    ),
]
train_cfg = dict(type=FastResumeIterBasedTrainLoop, max_iters=max_iters, val_interval=1000)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
default_hooks.checkpoint.interval = 1000
