# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""SAM through HF transformers' ``SamModel``: configs of the official models and a converter from
the official checkpoint layout (``sam_vit_b_01ec64.pth``, ``sam_vit_l_0b3195.pth``,
``sam_vit_h_4b8939.pth`` of facebookresearch/segment-anything) to HF parameter names.

Nothing downloads: checkpoints are local files read weights-only
(:func:`mmrefvlm.utils.checkpoint.load_state_file`).
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from mmrefvlm.utils.checkpoint import load_state_file

#: Image encoders of the official checkpoints (SAM paper; segment-anything ``build_sam.py``).
SAM_VISION_PRESETS: dict[str, dict[str, Any]] = {
    'sam_vit_b': dict(
        hidden_size=768,
        num_hidden_layers=12,
        num_attention_heads=12,
        global_attn_indexes=[2, 5, 8, 11],
    ),
    'sam_vit_l': dict(
        hidden_size=1024,
        num_hidden_layers=24,
        num_attention_heads=16,
        global_attn_indexes=[5, 11, 17, 23],
    ),
    'sam_vit_h': dict(
        hidden_size=1280,
        num_hidden_layers=32,
        num_attention_heads=16,
        global_attn_indexes=[7, 15, 23, 31],
    ),
}
# Shared by the three official models: 1024 px input, patch 16, window 14, 256-d prompts, a
# 2-layer two-way transformer (8 heads, MLP 2048), 3 + 1 mask tokens, 3-layer IoU head.
_SAM_COMMON = dict(
    vision_config=dict(
        image_size=1024,
        patch_size=16,
        window_size=14,
        output_channels=256,
        mlp_ratio=4.0,
        qkv_bias=True,
        use_abs_pos=True,
        use_rel_pos=True,
        layer_norm_eps=1e-6,
    ),
    prompt_encoder_config=dict(
        hidden_size=256, mask_input_channels=16, num_point_embeddings=4, layer_norm_eps=1e-6
    ),
    # The official two-way transformer uses torch's default LayerNorm eps (1e-5); HF's default
    # (1e-6) would shift outputs slightly.
    mask_decoder_config=dict(
        hidden_size=256,
        mlp_dim=2048,
        num_hidden_layers=2,
        num_attention_heads=8,
        attention_downsample_rate=2,
        num_multimask_outputs=3,
        iou_head_depth=3,
        iou_head_hidden_dim=256,
        layer_norm_eps=1e-5,
    ),
)


def sam_config_dict(
    preset: str | None = 'sam_vit_b', overrides: Mapping[str, Mapping[str, Any]] | None = None
) -> dict:
    """Keyword arguments of ``transformers.SamConfig`` for a preset plus overrides.

    The sizes the three parts must agree on are derived, not repeated: the prompt width is the
    vision ``output_channels`` and the mask decoder width; the random-Fourier position code has
    ``prompt width / 2`` frequencies; the prompt encoder gets the vision image and patch size.

    Args:
        preset (str, optional): ``'sam_vit_b'``, ``'sam_vit_l'`` or ``'sam_vit_h'``; None for
            the common settings alone (ViT-B sized by HF defaults). Defaults to ``'sam_vit_b'``.
        overrides (Mapping, optional): ``vision_config`` / ``prompt_encoder_config`` /
            ``mask_decoder_config`` entries to change (e.g. a tiny model for tests).

    Returns:
        dict: ``vision_config``, ``prompt_encoder_config``, ``mask_decoder_config`` dicts.
    """
    if preset is not None and preset not in SAM_VISION_PRESETS:
        raise ValueError(f'unknown SAM preset {preset!r}; known: {sorted(SAM_VISION_PRESETS)}')
    cfg = copy.deepcopy(_SAM_COMMON)
    if preset is not None:
        cfg['vision_config'].update(SAM_VISION_PRESETS[preset])
    for part, values in (overrides or {}).items():
        if part not in cfg:
            raise ValueError(f'unknown SAM config part {part!r}; use one of {sorted(cfg)}')
        cfg[part].update(values)
    vision, prompt = cfg['vision_config'], cfg['prompt_encoder_config']
    width = vision['output_channels']
    prompt.update(
        hidden_size=width, image_size=vision['image_size'], patch_size=vision['patch_size']
    )
    cfg['mask_decoder_config']['hidden_size'] = width
    vision['num_pos_feats'] = width // 2
    return cfg


def build_sam_model(
    preset: str | None = 'sam_vit_b', overrides: Mapping[str, Mapping[str, Any]] | None = None
):
    """A randomly initialised ``transformers.SamModel`` (load weights with
    :func:`load_official_sam_checkpoint`)."""
    from transformers import SamConfig, SamModel

    return SamModel(SamConfig(**sam_config_dict(preset, overrides)))


# (pattern, replacement) applied in order to every official key after its component prefix.
_VISION_RULES = [
    (r'^patch_embed\.proj\.', 'patch_embed.projection.'),
    (r'^blocks\.(\d+)\.norm(\d)\.', r'layers.\1.layer_norm\2.'),
    (r'^blocks\.', 'layers.'),
    (r'^neck\.0\.', 'neck.conv1.'),
    (r'^neck\.1\.', 'neck.layer_norm1.'),
    (r'^neck\.2\.', 'neck.conv2.'),
    (r'^neck\.3\.', 'neck.layer_norm2.'),
]
_PROMPT_RULES = [
    (r'^pe_layer\.positional_encoding_gaussian_matrix$', 'shared_embedding.positional_embedding'),
    (r'^point_embeddings\.', 'point_embed.'),
    (r'^mask_downscaling\.0\.', 'mask_embed.conv1.'),
    (r'^mask_downscaling\.1\.', 'mask_embed.layer_norm1.'),
    (r'^mask_downscaling\.3\.', 'mask_embed.conv2.'),
    (r'^mask_downscaling\.4\.', 'mask_embed.layer_norm2.'),
    (r'^mask_downscaling\.6\.', 'mask_embed.conv3.'),
]
_MASK_DECODER_RULES = [
    (r'^transformer\.layers\.(\d+)\.norm(\d)\.', r'transformer.layers.\1.layer_norm\2.'),
    (r'^transformer\.norm_final_attn\.', 'transformer.layer_norm_final_attn.'),
    (r'^output_upscaling\.0\.', 'upscale_conv1.'),
    (r'^output_upscaling\.1\.', 'upscale_layer_norm.'),
    (r'^output_upscaling\.3\.', 'upscale_conv2.'),
]
_COMPONENTS = {
    'image_encoder.': ('vision_encoder.', _VISION_RULES),
    'prompt_encoder.': ('prompt_encoder.', _PROMPT_RULES),
    'mask_decoder.': ('mask_decoder.', _MASK_DECODER_RULES),
}
# Official MLP(num_layers=d): layers.0 .. layers.{d-1}; HF SamFeedForward: proj_in, layers.0 ..
# layers.{d-3}, proj_out.
_MLP_RE = re.compile(r'^(output_hypernetworks_mlps\.\d+|iou_prediction_head)\.layers\.(\d+)\.(.+)$')


def _rename_mlp(key: str, depths: Mapping[str, int]) -> str:
    match = _MLP_RE.match(key)
    if match is None:
        return key
    head, idx, rest = match.group(1), int(match.group(2)), match.group(3)
    depth = depths[head]
    if idx == 0:
        return f'{head}.proj_in.{rest}'
    if idx == depth - 1:
        return f'{head}.proj_out.{rest}'
    return f'{head}.layers.{idx - 1}.{rest}'


def convert_official_sam_state(state: Mapping[str, Tensor], prefix: str = '') -> dict[str, Tensor]:
    """Rename an official SAM state dict to ``transformers.SamModel`` names.

    Args:
        state (Mapping[str, Tensor]): Official keys (``image_encoder.blocks.0.attn.qkv.weight``,
            ``prompt_encoder.pe_layer.positional_encoding_gaussian_matrix``,
            ``mask_decoder.transformer.layers.0.norm1.weight``...), optionally under ``prefix``.
        prefix (str): Leading key prefix to strip and select by (e.g. ``'visual_model.'`` for a
            LISA checkpoint). Keys outside it are ignored.

    Returns:
        dict[str, Tensor]: HF keys; the position-code matrix appears twice (the prompt encoder's
        and the model-level ``shared_image_embedding`` copy). ``pixel_mean`` / ``pixel_std``
        buffers are dropped.

    Raises:
        ValueError: A key under ``prefix`` that belongs to no SAM component.
    """
    items = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
    items = {k: v for k, v in items.items() if k not in ('pixel_mean', 'pixel_std')}
    depths: dict[str, int] = {}  # number of layers of every official MLP
    for key in items:
        match = _MLP_RE.match(key.removeprefix('mask_decoder.'))
        if key.startswith('mask_decoder.') and match:
            depths[match.group(1)] = max(depths.get(match.group(1), 0), int(match.group(2)) + 1)
    out: dict[str, Tensor] = {}
    for key, value in items.items():
        comp = next((c for c in _COMPONENTS if key.startswith(c)), None)
        if comp is None:
            raise ValueError(
                f'{prefix}{key!r} is not an official SAM key (expected '
                f'{sorted(_COMPONENTS)} prefixes)'
            )
        new_prefix, rules = _COMPONENTS[comp]
        rest = key[len(comp) :]
        for pattern, repl in rules:
            rest = re.sub(pattern, repl, rest)
        if comp == 'mask_decoder.':
            rest = _rename_mlp(rest, depths)
        out[new_prefix + rest] = value
    gauss = out.get('prompt_encoder.shared_embedding.positional_embedding')
    if gauss is not None:
        out['shared_image_embedding.positional_embedding'] = gauss
    return out


def load_official_sam_checkpoint(model, filename: str, prefix: str = '') -> None:
    """Load an official SAM checkpoint file (weights-only) into a ``SamModel``, strictly.

    Args:
        model (transformers.SamModel): Built with the matching config (:func:`build_sam_model`).
        filename (str): ``.pth`` / ``.safetensors`` path (a bare state dict or under
            ``state_dict``).
        prefix (str): Key prefix of the SAM weights in the file. Defaults to ``''``.

    Raises:
        ValueError: Missing or unexpected keys, or a shape mismatch (e.g. a ViT-L checkpoint
            in a ViT-B config), listing a few of them.
    """
    state = load_state_file(filename)
    state = state.get('state_dict', state)
    converted = convert_official_sam_state(state, prefix)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(converted))
    unexpected = sorted(set(converted) - set(expected))
    shapes = [
        f'{k}: {tuple(converted[k].shape)} vs {tuple(v.shape)}'
        for k, v in expected.items()
        if k in converted and converted[k].shape != v.shape
    ]
    if missing or unexpected or shapes:
        raise ValueError(
            f'{filename!r} does not fit this SAM config: missing {missing[:5]} '
            f'({len(missing)}), unexpected {unexpected[:5]} ({len(unexpected)}), '
            f'shape mismatches {shapes[:5]} ({len(shapes)})'
        )
    with torch.no_grad():
        for key, value in expected.items():
            value.copy_(converted[key].to(value.dtype))
