# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
# REF-VLM at paper scale: Vicuna-7B v1.5, CLIP ViT-L/14-336 (576 image tokens), CLIP-ConvNeXt-L at
# 512 (frozen pyramid for the decoders), box + mask meta decoders (App. C, Table 12/13).
# Weights are read from local folders only; nothing downloads.
from mmrefvlm.models import (
    CLIPViTEncoder,
    ConvNeXtPyramid,
    LatentEmbeddingRouter,
    MaskGuidedAggregation,
    RefVLM,
)
from mmrefvlm.models.unit_decoders import BoxUnitDecoder, BoxUnitHead, MaskUnitDecoder, MaskUnitHead

# --- user-facing knobs: local checkpoint folders ---
checkpoint_root = 'checkpoints'
llm_name_or_path = checkpoint_root + '/vicuna-7b-v1.5'
clip_name_or_path = checkpoint_root + '/clip-vit-large-patch14-336'
# converted once with tools/model_converters/open_clip_convnext_to_hf.py
convnext_name_or_path = checkpoint_root + '/clip-convnext-large-512-hf'
tokenizer = dict(source=llm_name_or_path)
llm_hidden_size = 4096
vit_image_size = 336
num_image_tokens = 576
pyramid_image_size = 512
num_prompt_tokens = 9
mask_size = 336
pyramid_channels = (192, 384, 768, 1536)
clip_channels = 1024

model = dict(
    type=RefVLM,
    tokenizer=tokenizer,
    # Trainable weights stay float32 (bf16 autocast computes in bf16): AdamW updates at lr 2e-6 are
    # far below bf16 resolution and would mostly round away. Full fine-tuning of 7B in fp32 + AdamW
    # needs ZeRO sharding (stage2_deepspeed.py); one GPU: stage2_lora.py (see docs/benchmarks.md).
    llm=dict(name_or_path=llm_name_or_path, torch_dtype='float32', attn_implementation='sdpa'),
    vision_encoder=dict(
        type=CLIPViTEncoder,
        name_or_path=clip_name_or_path,
        select_layer=-2,
        frozen=True,
        torch_dtype='bfloat16',
    ),
    pyramid_encoder=dict(
        type=ConvNeXtPyramid,
        name_or_path=convnext_name_or_path,
        frozen=True,
        torch_dtype='bfloat16',
    ),
    prompt_encoder=dict(type=MaskGuidedAggregation, k=3, temperature=10000.0, alpha=1.0),
    router=dict(type=LatentEmbeddingRouter, ref_position='ref'),
    unit_decoders=dict(
        box=dict(
            type=BoxUnitDecoder,
            num_queries=100,
            d_model=256,
            pyramid_channels=pyramid_channels,
            clip_channels=clip_channels,
            memory=dict(levels=(0, 1, 2), use_clip=True, size=128),
            decoder=dict(num_layers=6, num_heads=8, ffn_dim=2048, dropout=0.1),
            head=dict(type=BoxUnitHead, box_head='mlp'),
        ),
        mask=dict(
            type=MaskUnitDecoder,
            num_queries=30,
            d_model=256,
            pyramid_channels=pyramid_channels,
            clip_channels=clip_channels,
            memory=dict(levels=(), use_clip=True, size=None),
            decoder=dict(num_layers=6, num_heads=8, ffn_dim=2048, dropout=0.1),
            head=dict(
                type=MaskUnitHead,
                pixel_levels=(0, 1, 2),
                pixel_use_clip=True,
                fpn_dim=256,
                mask_dim=256,
            ),
        ),
    ),
    loss_weights=dict(llm=1.0, box=0.5, mask=0.5),
    gradient_checkpointing=True,
    max_new_tokens=512,
)
