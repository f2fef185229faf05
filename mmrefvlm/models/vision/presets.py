# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""Architecture presets for the vision encoders, as plain dicts for ``config=`` (random init).

The paper-scale presets describe the released checkpoints, so ``config=PRESET`` builds the same
architecture that ``name_or_path=`` loads (used for meta-device parameter counts and shape checks
without weights). The tiny presets are for CPU tests and the demo. Treat all of them as read-only:
the encoders copy the dict and never mutate it.
"""

from __future__ import annotations

# OpenAI CLIP normalisation, in [0, 1] pixel scale (multiply by 255 for uint8 inputs). The LAION
# CLIP-ConvNeXt checkpoints were trained with the same constants (open_clip's OPENAI_DATASET_*).
OPENAI_CLIP_MEAN: tuple[float, float, float] = (0.48145466, 0.4578275, 0.40821073)
OPENAI_CLIP_STD: tuple[float, float, float] = (0.26862954, 0.26130258, 0.27577711)

# openai/clip-vit-large-patch14-336, vision tower (``CLIPVisionConfig`` fields): 24x24 = 576
# patches.
CLIP_VIT_L14_336: dict = dict(
    hidden_size=1024,
    intermediate_size=4096,
    num_hidden_layers=24,
    num_attention_heads=16,
    image_size=336,
    patch_size=14,
    projection_dim=768,
    hidden_act='quick_gelu',
    layer_norm_eps=1e-5,
    num_channels=3,
)

# LAION CLIP-ConvNeXt-Large trunk (timm ``convnext_large``) run at 512 px: strides 4/8/16/32 give
# 128/64/32/16 maps (``ConvNextConfig`` fields; eps 1e-6 matches timm's LayerNorm default).
CLIP_CONVNEXT_L_512: dict = dict(
    depths=[3, 3, 27, 3],
    hidden_sizes=[192, 384, 768, 1536],
    image_size=512,
    patch_size=4,
    num_channels=3,
    hidden_act='gelu',
    layer_norm_eps=1e-6,
    layer_scale_init_value=1e-6,
    drop_path_rate=0.0,
)

# Tiny variants for CPU tests: 32 px / patch 8 -> 4x4 grid; 64 px -> 16/8/4/2 maps.
TINY_CLIP_VIT: dict = dict(
    hidden_size=32,
    intermediate_size=64,
    num_hidden_layers=2,
    num_attention_heads=4,
    image_size=32,
    patch_size=8,
    projection_dim=32,
)
TINY_CONVNEXT: dict = dict(depths=[1, 1, 1, 1], hidden_sizes=[16, 32, 64, 128], image_size=64)
