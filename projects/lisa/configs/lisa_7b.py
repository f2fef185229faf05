# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
# LISA-7B (Lai et al., CVPR 2024; the baseline of GSVA, `shared/seeds/002_*`): LLaVA-7B (Vicuna-7B
# LLM, CLIP ViT-L/14 at 224 px = 256 image tokens, linear projector) + SAM ViT-H (image encoder
# frozen at 1024 px, mask decoder trained). "Sure, it is [SEG]." - the [SEG] state at the emitting
# position -> MLP(4096 -> 4096 -> 256) -> SAM's sparse prompt. LoRA r=8 (alpha 16, dropout 0.05) on
# q_proj / v_proj; trainable: LoRA, the new token rows, the MLP, SAM's mask decoder. Loss 1.0 CE +
# 2.0 BCE + 0.5 DICE. AdamW lr 3e-4, betas (0.9, 0.95), wd 0, 100 warm-up steps then linear decay,
# 10 x 500 steps, 8 GPUs x batch 2 x 10 accumulation steps, bf16.
#   torchrun --nproc_per_node 8 tools/train.py projects/lisa/configs/lisa_7b.py --launcher pytorch
#   python tools/analysis/count_params.py projects/lisa/configs/lisa_7b.py --meta
# Weights are local files (nothing downloads): the LLaVA-7B language model as a Llama folder, CLIP
# ViT-L/14 (224 px), the official SAM ViT-H checkpoint; LLaVA's projector via `load_from`.
from mmengine.config import read_base
from mmengine.dataset import ConcatDataset, DefaultSampler
from mmengine.optim import LinearLR
from torch.optim import AdamW

with read_base():
    from ....configs._base_.default_runtime import *  # noqa: F401,F403

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
from mmrefvlm.engine import FastResumeIterBasedTrainLoop, NaNGuardOptimWrapper
from mmrefvlm.evaluation import GRESMetric
from mmrefvlm.models import (
    CLIPViTEncoder,
    LatentEmbeddingRouter,
    MLPProjector,
    RefVLM,
    SpecialTokenRefParser,
)
from projects.lisa.lisa_seg import (
    LisaMaskDecoder,
    MMDetRefSegMetric,
    SlotAnswerFormat,
    UnionExpressionTargets,
)
from projects.sam_plugin.sam_unit import PackSamImage

custom_imports = dict(imports=['projects.lisa.lisa_seg'], allow_failed_imports=False)

# --- knobs: local checkpoints and data ---
checkpoint_root = 'checkpoints'
llm_name_or_path = checkpoint_root + '/llava-7b-lightning-v1-1-llama'  # LLaVA-7B's LLM (Llama)
clip_name_or_path = checkpoint_root + '/clip-vit-large-patch14'  # 224 px
sam_checkpoint = checkpoint_root + '/sam_vit_h_4b8939.pth'  # official segment-anything file
llava_projector_checkpoint = None  # LLaVA's mm_projector as `projector.layers.0.*` weights
seg_token = '[SEG]'
ref_parser = dict(type=SpecialTokenRefParser, ref_tokens={seg_token: 'mask'})
tokenizer = dict(source=llm_name_or_path, extra_tokens=[seg_token])
system_prompt = (
    'A chat between a curious user and an artificial intelligence assistant. The assistant '
    "gives helpful, detailed, and polite answers to the user's questions."
)
vit_image_size = 224
num_image_tokens = (vit_image_size // 14) ** 2  # 256
sam_image_size = 1024
mask_size = 256
data_root = 'data'
# RES data converted by tools/dataset_converters/{refcoco,grefcoco}.py. LISA also mixes semantic
# segmentation, VQA and ReasonSeg (9 : 3 : 3 : 1); those converters do not exist yet.
train_files = {
    'records/refcoco_train_res.jsonl': 1,
    'records/refcoco+_train_res.jsonl': 1,
    'records/refcocog_train_res.jsonl': 1,
    'records/grefcoco_train.jsonl': 1,
}
val_files = ['records/refcoco_val_res.jsonl', 'records/grefcoco_val.jsonl']
train_batch_size = 2  # per GPU
accumulative_counts = 10
lr = 3e-4
max_iters = 10 * 500
warmup_iters = 100

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
    projector=dict(type=MLPProjector, depth=1),  # LLaVA v1: one linear layer
    freeze_projector=True,
    router=dict(type=LatentEmbeddingRouter, ref_position='emitting'),
    ref_parser=ref_parser,
    unit_decoders=dict(
        mask=dict(
            type=LisaMaskDecoder,
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
    dict(type=UnionExpressionTargets, empty='target', template='lisa_seg', system=system_prompt),
    dict(type=PrepareImages, sizes=dict(vit=vit_image_size, sam=sam_image_size)),
]
_format = dict(
    type=FormatConversation,
    tokenizer=tokenizer,
    chat_template='vicuna',
    num_image_tokens=num_image_tokens,
    cot=False,
    max_length=512,
    extra_template_dirs=['projects.lisa.lisa_seg:templates'],
    answer_format=dict(
        type=SlotAnswerFormat, ref_token=seg_token, prefix='Sure, it is ', slot='{token}'
    ),
    ref_parser=ref_parser,
)
_targets = dict(mask=dict(type=MaskTarget, size=mask_size, allow_empty=True))
train_pipeline = _load + [
    _format,
    dict(type=BuildUnitTargets, unit_targets=_targets, with_original=False),
    dict(type=PackRefVLMInputs),
    dict(type=PackSamImage, key='sam'),
]
test_pipeline = _load + [
    dict(_format, predict=True),
    dict(type=BuildUnitTargets, unit_targets=_targets),
    dict(type=PackRefVLMInputs),
    dict(type=PackSamImage, key='sam'),
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
val_evaluator = [
    dict(type=MMDetRefSegMetric),
    dict(type=GRESMetric, empty_rule='pixels', empty_pixels=50),  # ReLA's rule without [REJ]
]
test_evaluator = val_evaluator

# --- schedule ---
optim_wrapper = dict(
    type=NaNGuardOptimWrapper,
    action='skip',
    max_consecutive=10,
    optimizer=dict(type=AdamW, lr=lr, betas=(0.9, 0.95), weight_decay=0.0),
    clip_grad=dict(max_norm=1.0, error_if_nonfinite=False),
    accumulative_counts=accumulative_counts,
)
param_scheduler = [
    dict(type=LinearLR, start_factor=1e-3, by_epoch=False, begin=0, end=warmup_iters),
    dict(
        type=LinearLR,
        start_factor=1.0,
        end_factor=0.0,
        by_epoch=False,
        begin=warmup_iters,
        end=max_iters,
    ),
]
train_cfg = dict(type=FastResumeIterBasedTrainLoop, max_iters=max_iters, val_interval=500)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
default_hooks.checkpoint.interval = 500
