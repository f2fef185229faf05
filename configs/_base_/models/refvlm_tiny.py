# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
# A tiny RefVLM for CPU tests and the embedded demo: random-initialised Llama, CLIP-ViT and
# ConvNeXt (trainable, since nothing is pretrained), small box/mask/keypoint/depth decoders.
# Decoders get in_channels / clip_channels / pyramid_channels from RefVLM; the box, mask and
# keypoint decoders compose the shared DETR blocks (memory, decoder, head). The box and keypoint
# decoders use the pointer box head: plain DETR regression does not converge in a CPU budget.
from mmrefvlm.models import (
    BoxUnitDecoder,
    BoxUnitHead,
    CLIPViTEncoder,
    ConvNeXtPyramid,
    DepthUnitDecoder,
    KeypointUnitDecoder,
    KeypointUnitHead,
    LatentEmbeddingRouter,
    MaskGuidedAggregation,
    MaskUnitDecoder,
    MaskUnitHead,
    RefVLM,
)

# --- user-facing knobs ---
tokenizer = dict(source='demo')
llm_hidden_size = 128
vit_image_size = 64
vit_patch_size = 8
num_image_tokens = (vit_image_size // vit_patch_size) ** 2
pyramid_image_size = 64
prompt_grid = 3
num_prompt_tokens = prompt_grid * prompt_grid
decoder_dim = 64
mask_size = 64
depth_size = 32
num_keypoints = 5

model = dict(
    type=RefVLM,
    tokenizer=tokenizer,
    llm=dict(
        config=dict(
            model_type='llama',
            vocab_size=2048,
            hidden_size=llm_hidden_size,
            intermediate_size=4 * llm_hidden_size,
            num_hidden_layers=3,
            num_attention_heads=4,
            num_key_value_heads=4,
            max_position_embeddings=512,
            tie_word_embeddings=False,
        )
    ),
    vision_encoder=dict(
        type=CLIPViTEncoder,
        frozen=False,
        select_layer=-2,
        config=dict(
            hidden_size=64,
            intermediate_size=128,
            num_hidden_layers=3,
            num_attention_heads=4,
            image_size=vit_image_size,
            patch_size=vit_patch_size,
        ),
    ),
    pyramid_encoder=dict(
        type=ConvNeXtPyramid,
        frozen=False,
        config=dict(
            depths=[1, 1, 1, 1], hidden_sizes=[16, 32, 64, 128], image_size=pyramid_image_size
        ),
    ),
    prompt_encoder=dict(type=MaskGuidedAggregation, k=prompt_grid),
    router=dict(type=LatentEmbeddingRouter, ref_position='ref'),
    unit_decoders=dict(
        box=dict(
            type=BoxUnitDecoder,
            num_queries=8,
            d_model=decoder_dim,
            memory=dict(levels=(0, 1, 2), use_clip=True, size=16),
            decoder=dict(num_layers=2, num_heads=4, ffn_dim=2 * decoder_dim, dropout=0.0),
            head=dict(type=BoxUnitHead, box_head='pointer'),
        ),
        mask=dict(
            type=MaskUnitDecoder,
            num_queries=8,
            d_model=decoder_dim,
            memory=dict(levels=(), use_clip=True, size=None),
            decoder=dict(num_layers=2, num_heads=4, ffn_dim=2 * decoder_dim, dropout=0.0),
            head=dict(type=MaskUnitHead, fpn_dim=decoder_dim, mask_dim=decoder_dim),
        ),
        keypoint=dict(
            type=KeypointUnitDecoder,
            num_queries=8,
            num_keypoints=num_keypoints,
            sigmas=0.1,
            d_model=decoder_dim,
            memory=dict(levels=(0, 1, 2), use_clip=True, size=16),
            decoder=dict(num_layers=2, num_heads=4, ffn_dim=2 * decoder_dim, dropout=0.0),
            head=dict(type=KeypointUnitHead, box_head='pointer', point_decoder=dict(num_layers=1)),
        ),
        depth=dict(
            type=DepthUnitDecoder,
            num_queries=2,
            d_model=decoder_dim,
            fpn_dim=decoder_dim,
            pixel_dim=decoder_dim,
        ),
    ),
    loss_weights=dict(llm=1.0, box=1.0, mask=1.0, keypoint=1.0, depth=1.0),
    max_new_tokens=48,
)
