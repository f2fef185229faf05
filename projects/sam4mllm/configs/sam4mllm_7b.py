# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
# SAM4MLLM-7B-PPG (Chen et al., ECCV 2024; `shared/seeds/004_*`) at the paper's scale:
# Qwen-VL-7B-Chat (Bai et al., 2023) = ViT-bigG/14 at 448 px (32 x 32 patches) -> a single-layer
# cross-attention resampler to 256 image tokens -> Qwen-7B; LoRA r=256 (alpha 128, dropout 0.05)
# and the resampler trained, everything else frozen (SAM4MLLM Sec. 4.1); text CE only. A frozen
# SAM turns the parsed prompts into masks. Training (Sec. 4.1): lr 1e-5, weight decay 0.1,
# cosine with 3 % warm-up, 8 GPUs x batch 2 x 8 accumulation steps, texts cut at 2048 tokens,
# 3 epochs, fp16.
#   torchrun --nproc_per_node 8 tools/train.py projects/sam4mllm/configs/sam4mllm_7b.py \
#       --launcher pytorch
#   python tools/analysis/count_params.py projects/sam4mllm/configs/sam4mllm_7b.py --meta
# Architecture as built here (projects/sam4mllm/tests/test_sam4mllm_params.py checks the sizes):
# - Qwen-7B as transformers' Qwen2 (hidden 4096, 32 layers, 32 heads, SwiGLU 11008, vocabulary
#   151936, untied embeddings, biases on q / k / v only): the same parameter shapes as Qwen's own
#   remote code, 7.72 B (Qwen-VL, Table 1: 7.7 B).
# - ViT-bigG/14 (OpenCLIP: width 1664, 48 layers, 16 heads, MLP 8192) as a CLIPVisionModel at
#   448 px, last layer: 1.844 B (Qwen-VL, Table 1: 1.9 B). The CLIP layout adds a class token and
#   its position row and a post-LayerNorm that Qwen-VL's ViT lacks (1.7 M + 3 K).
# - CrossAttnResampler (this project): 256 queries, 32 heads, LayerNorm + 4096 x 4096 projection
#   after it, 91.8 M (Qwen-VL, Table 1: 0.08 B for the adapter; its attention block alone is
#   75.0 M).
# - SAM: the paper uses EfficientViT-SAM-XL1, which transformers cannot build; this config uses
#   SAM ViT-H (HF SamModel, 0.641 B; SAM paper: 636 M), as the LISA / GSVA / AnyRef configs.
# Weights are local files in these modules' layouts (nothing downloads): the LLM as a Qwen2 folder,
# the ViT as a CLIPVisionModel folder, the resampler as `projector.*` weights (`load_from`), the
# official SAM ViT-H checkpoint. No converter from Qwen-VL-Chat's remote-code checkpoint (fused
# c_attn, w1 / w2 / c_proj, `transformer.visual.*`) exists yet, and its tiktoken tokenizer needs
# remote code: until then training stops at the missing folders instead of starting from random
# weights. `count_params.py` builds the shapes from `meta_substitutes` without them.
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
    PackRefVLMInputs,
    PrepareImages,
    RefVLMDataset,
    WeightedMultiDatasetSampler,
    refvlm_collate,
)
from mmrefvlm.datasets.transforms import MaskTarget
from mmrefvlm.engine import NaNGuardOptimWrapper
from mmrefvlm.evaluation import GRESMetric, RESMetric
from mmrefvlm.models import CLIPViTEncoder
from projects.sam4mllm.sam4mllm_seg import (
    SAM4MLLM,
    CrossAttnResampler,
    PromptableSam,
    SAM4MLLMConversation,
    SamPromptAnswerFormat,
)
from projects.sam_plugin.sam_unit import PackSamImage

custom_imports = dict(imports=['projects.sam4mllm.sam4mllm_seg'], allow_failed_imports=False)

# --- knobs: local checkpoints and data ---
variant = 'ppg'
checkpoint_root = 'checkpoints'
llm_name_or_path = checkpoint_root + '/qwen-vl-chat-llm-qwen2'  # Qwen-VL-Chat's LLM as Qwen2
vit_name_or_path = checkpoint_root + '/qwen-vl-chat-vit-bigg-clip'  # its ViT as CLIPVisionModel
tokenizer_path = checkpoint_root + '/qwen-vl-chat-tokenizer'  # one AutoTokenizer can read
sam_checkpoint = checkpoint_root + '/sam_vit_h_4b8939.pth'  # official segment-anything file
resampler_checkpoint = checkpoint_root + '/qwen-vl-chat-resampler.pth'  # `projector.*` weights
ppg_labels = None  # tools/make_ppg_labels.py output for these records; None: no SAM in the loop
tokenizer = dict(source=tokenizer_path)
vit_image_size = 448
num_image_tokens = 256  # the resampler's queries
sam_image_size = 1024
mask_size = 256
num_bins = 1000  # Qwen-VL's coordinate range [0, 1000)
chat_template = 'chatml'  # Qwen-VL-Chat's
system_prompt = 'You are a helpful assistant.'
# Qwen-7B (Qwen-VL's LLM) as transformers' Qwen2 architecture: same parameter shapes
qwen_7b = dict(
    model_type='qwen2',
    hidden_size=4096,
    intermediate_size=11008,
    num_hidden_layers=32,
    num_attention_heads=32,
    num_key_value_heads=32,
    vocab_size=151936,  # Qwen's 151851 tokens + Qwen-VL's special tokens, padded
    max_position_embeddings=8192,
    rms_norm_eps=1e-6,
    rope_theta=10000.0,
    tie_word_embeddings=False,
)
# ViT-bigG/14 (OpenCLIP) at Qwen-VL's 448 px, as CLIPVisionConfig fields
vit_bigg_14_448 = dict(
    hidden_size=1664,
    intermediate_size=8192,
    num_hidden_layers=48,
    num_attention_heads=16,
    image_size=vit_image_size,
    patch_size=14,
    hidden_act='gelu',
    layer_norm_eps=1e-6,
    num_channels=3,
)
# the architectures tools/analysis/count_params.py builds when the folders above do not exist
meta_substitutes = dict(llm=qwen_7b, vision_encoder=vit_bigg_14_448)
data_root = 'data'
# RES / GRES records converted by tools/dataset_converters/{refcoco,grefcoco}.py. The paper also
# trains on VQA dialogues (Sec. 4.1); those records are not converted here.
train_files = {
    'records/refcoco_train_res.jsonl': 1,
    'records/refcoco+_train_res.jsonl': 1,
    'records/refcocog_train_res.jsonl': 1,
    'records/grefcoco_train.jsonl': 1,
}
val_files = ['records/refcoco_val_res.jsonl', 'records/grefcoco_val.jsonl']
template = 'sam4mllm_ppg'
train_batch_size = 2  # per GPU
accumulative_counts = 8
lr = 1e-5
max_epochs = 3
max_length = 2048

# --- model ---
model = dict(
    type=SAM4MLLM,
    tokenizer=tokenizer,
    llm=dict(name_or_path=llm_name_or_path, torch_dtype='float16', attn_implementation='sdpa'),
    vision_encoder=dict(
        type=CLIPViTEncoder,
        name_or_path=vit_name_or_path,
        select_layer=-1,  # Qwen-VL resamples the last layer's patch features
        frozen=True,
        torch_dtype='float16',
    ),
    pyramid_encoder=None,
    projector=dict(type=CrossAttnResampler, num_queries=num_image_tokens, head_dim=128),
    freeze_projector=False,  # SAM4MLLM trains the visual resampler with LoRA
    sam=dict(type=PromptableSam, sam='sam_vit_h', checkpoint=sam_checkpoint),
    variant=variant,
    num_bins=num_bins,
    chat_template=chat_template,
    loss_weights=dict(llm=1.0),
    # target modules: the paper does not say; every linear layer of the LLM here
    lora=dict(
        r=256,
        lora_alpha=128,
        lora_dropout=0.05,
        target_modules=[
            'q_proj',
            'k_proj',
            'v_proj',
            'o_proj',
            'gate_proj',
            'up_proj',
            'down_proj',
        ],
    ),
    gradient_checkpointing=True,
    max_new_tokens=64,
)
load_from = resampler_checkpoint

# --- data: RES / GRES records as SAM-prompt answers ---
_load = [
    dict(type=LoadRecordImage),
    dict(type=PrepareImages, sizes=dict(vit=vit_image_size, sam=sam_image_size)),
]
_rewrite = dict(
    type=SAM4MLLMConversation,
    variant=variant,
    num_bins=num_bins,
    template=template,
    count='0+',  # the paper trains with '0+' everywhere
    system=system_prompt,
    labels=ppg_labels,
)
_format = dict(
    type=FormatConversation,
    tokenizer=tokenizer,
    chat_template=chat_template,
    num_image_tokens=num_image_tokens,
    cot=False,
    max_length=max_length,
    extra_template_dirs=['projects.sam4mllm.sam4mllm_seg:templates'],
    answer_format=dict(type=SamPromptAnswerFormat),
)
_targets = dict(mask=dict(type=MaskTarget, size=mask_size))
train_pipeline = _load + [_rewrite, _format, dict(type=PackRefVLMInputs)]
test_pipeline = _load + [
    dict(_rewrite, predict=True, labels=None),
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
val_evaluator = [dict(type=RESMetric), dict(type=GRESMetric)]
test_evaluator = val_evaluator

# --- schedule: the paper's Lion is not in torch; AdamW with its lr and weight decay ---
optim_wrapper = dict(
    type=NaNGuardOptimWrapper,
    action='skip',
    max_consecutive=10,
    optimizer=dict(type=AdamW, lr=lr, weight_decay=0.1),
    clip_grad=dict(max_norm=1.0, error_if_nonfinite=False),
    accumulative_counts=accumulative_counts,
)
param_scheduler = [
    dict(
        type=LinearLR,
        start_factor=1e-3,
        by_epoch=True,
        begin=0,
        end=0.03 * max_epochs,
        convert_to_iter_based=True,
    ),
    dict(
        type=CosineAnnealingLR,
        by_epoch=True,
        begin=0.03 * max_epochs,
        end=max_epochs,
        T_max=0.97 * max_epochs,
        convert_to_iter_based=True,
    ),
]
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs, val_interval=1)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
default_hooks.checkpoint.interval = 1
