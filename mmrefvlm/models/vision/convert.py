# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""open_clip CLIP-ConvNeXt (timm trunk) -> HF ``ConvNextModel`` weight conversion.

open_clip stores a timm ``ConvNeXt`` as the image trunk under ``visual.trunk.``; the rest of the
file (``visual.head.*`` projection, text tower, ``logit_scale``) is not needed for the pyramid and
is ignored. The two layouts compute the same function (both: patch-conv stem + LayerNorm2d; per
stage an optional LayerNorm2d + 2x2/2 conv downsample; blocks of 7x7 depthwise conv -> LayerNorm
(channels-last) -> Linear(4C) -> exact GELU -> Linear(C) -> layer scale -> residual; every LayerNorm
with eps 1e-6, timm's default and HF's hard-coded value), so the mapping is a pure renaming:

=========================================  ==================================================
timm (``visual.trunk.`` stripped)          HF ``ConvNextModel``
=========================================  ==================================================
``stem.0.{weight,bias}`` (conv)            ``embeddings.patch_embeddings.*``
``stem.1.{weight,bias}`` (LayerNorm2d)     ``embeddings.layernorm.*``
``stages.i.downsample.0.*`` (LayerNorm2d)  ``encoder.stages.i.downsampling_layer.0.*``
``stages.i.downsample.1.*`` (conv 2x2)     ``encoder.stages.i.downsampling_layer.1.*``
``stages.i.blocks.j.conv_dw.*``            ``encoder.stages.i.layers.j.dwconv.*``
``stages.i.blocks.j.norm.*``               ``encoder.stages.i.layers.j.layernorm.*``
``stages.i.blocks.j.mlp.fc{1,2}.*``        ``encoder.stages.i.layers.j.pwconv{1,2}.*``
``stages.i.blocks.j.gamma``                ``encoder.stages.i.layers.j.layer_scale_parameter``
``head.norm.*`` (pooled LayerNorm)         ``layernorm.*`` (unused by the pyramid)
=========================================  ==================================================

``conv_mlp`` variants store ``fc1``/``fc2`` as 1x1 convs; they are flattened to Linear weights.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

import torch
from mmengine.logging import print_log
from torch import Tensor

from mmrefvlm.models.llms import to_dtype
from mmrefvlm.utils import load_state_file

OPEN_CLIP_TRUNK_PREFIX = 'visual.trunk.'

_RULES: list[tuple[re.Pattern, str]] = [
    (re.compile(r'^stem\.0\.(weight|bias)$'), r'embeddings.patch_embeddings.\1'),
    (re.compile(r'^stem\.1\.(weight|bias)$'), r'embeddings.layernorm.\1'),
    (
        re.compile(r'^stages\.(\d+)\.downsample\.([01])\.(weight|bias)$'),
        r'encoder.stages.\1.downsampling_layer.\2.\3',
    ),
    (
        re.compile(r'^stages\.(\d+)\.blocks\.(\d+)\.conv_dw\.(weight|bias)$'),
        r'encoder.stages.\1.layers.\2.dwconv.\3',
    ),
    (
        re.compile(r'^stages\.(\d+)\.blocks\.(\d+)\.norm\.(weight|bias)$'),
        r'encoder.stages.\1.layers.\2.layernorm.\3',
    ),
    (
        re.compile(r'^stages\.(\d+)\.blocks\.(\d+)\.mlp\.fc([12])\.(weight|bias)$'),
        r'encoder.stages.\1.layers.\2.pwconv\3.\4',
    ),
    (
        re.compile(r'^stages\.(\d+)\.blocks\.(\d+)\.gamma$'),
        r'encoder.stages.\1.layers.\2.layer_scale_parameter',
    ),
    (re.compile(r'^head\.norm\.(weight|bias)$'), r'layernorm.\1'),
]
# Classifier parts of a timm trunk (absent in open_clip's, which resets the classifier).
_IGNORED = re.compile(r'^head\.(fc|pre_logits)\.')
_POOLED_NORM = ('layernorm.weight', 'layernorm.bias')


def _unwrap(state_dict: Mapping[str, Any]) -> dict[str, Tensor]:
    """Accept a bare state dict, ``{'state_dict': ...}`` and DDP ``module.`` prefixes."""
    inner = state_dict.get('state_dict')
    sd = dict(inner) if isinstance(inner, Mapping) else dict(state_dict)
    if sd and all(k.startswith('module.') for k in sd):
        sd = {k[len('module.') :]: v for k, v in sd.items()}
    return sd


def extract_trunk(state_dict: Mapping[str, Any], prefix: str | None = None) -> dict[str, Tensor]:
    """Select the timm trunk weights of an open_clip (or bare timm) ConvNeXt state dict.

    Args:
        state_dict (Mapping): The loaded file (bare, or with a ``'state_dict'`` entry).
        prefix (str, optional): Trunk key prefix. None detects ``'visual.trunk.'`` (open_clip)
            or ``''`` (a bare timm ConvNeXt with ``stem.0.weight``).

    Returns:
        dict[str, Tensor]: The trunk weights with the prefix removed.
    """
    sd = _unwrap(state_dict)
    if prefix is None:
        if any(k.startswith(OPEN_CLIP_TRUNK_PREFIX) for k in sd):
            prefix = OPEN_CLIP_TRUNK_PREFIX
        elif 'stem.0.weight' in sd:
            prefix = ''
        else:
            raise ValueError(
                'no ConvNeXt trunk found: expected keys starting with '
                f'{OPEN_CLIP_TRUNK_PREFIX!r} (open_clip) or a bare timm '
                f'`stem.0.weight`; '
                f'first keys are {sorted(sd)[:8]}'
            )
    trunk = {k[len(prefix) :]: v for k, v in sd.items() if k.startswith(prefix)}
    if not trunk:
        raise ValueError(f'no key starts with prefix {prefix!r}; first keys are {sorted(sd)[:8]}')
    if len(trunk) < len(sd):
        print_log(
            f'ignoring {len(sd) - len(trunk)} keys outside {prefix!r} (projection head, '
            'text tower, ...)',
            logger='current',
        )
    return trunk


def _rename(trunk: Mapping[str, Tensor]) -> dict[str, Tensor]:
    out: dict[str, Tensor] = {}
    unexpected = []
    for key, value in trunk.items():
        for pattern, target in _RULES:
            if pattern.match(key):
                if value.ndim == 4 and '.mlp.fc' in key:  # conv_mlp: 1x1 conv -> Linear
                    value = value.flatten(1)
                out[pattern.sub(target, key)] = value
                break
        else:
            if _IGNORED.match(key):
                print_log(f'ignoring classifier weight {key!r}', logger='current')
            else:
                unexpected.append(key)
    if unexpected:
        raise ValueError(
            f'{len(unexpected)} trunk keys have no HF ConvNext counterpart (not a '
            f'patch-stem timm ConvNeXt?): {sorted(unexpected)[:10]}'
        )
    return out


def _infer_config(trunk: Mapping[str, Tensor], image_size: int) -> Any:
    from transformers import ConvNextConfig

    stem = trunk.get('stem.0.weight')
    if stem is None or stem.ndim != 4 or stem.shape[-1] != stem.shape[-2]:
        raise ValueError(
            'expected a square patch-conv stem `stem.0.weight` of shape '
            f'(C, in, p, p), got {None if stem is None else tuple(stem.shape)}'
        )
    blocks: dict[int, set[int]] = {}
    for key in trunk:
        m = re.match(r'^stages\.(\d+)\.blocks\.(\d+)\.', key)
        if m:
            blocks.setdefault(int(m.group(1)), set()).add(int(m.group(2)))
    if sorted(blocks) != list(range(len(blocks))) or not blocks:
        raise ValueError(f'stage indices must be 0..N-1, got {sorted(blocks)}')
    depths, dims = [], []
    for i in range(len(blocks)):
        depths.append(max(blocks[i]) + 1)  # a gap in block indices shows up as missing keys
        dw = trunk.get(f'stages.{i}.blocks.0.conv_dw.weight')
        if dw is None:
            raise ValueError(f'missing stages.{i}.blocks.0.conv_dw.weight (cannot infer width)')
        dims.append(int(dw.shape[0]))
    return ConvNextConfig(
        num_channels=int(stem.shape[1]),
        patch_size=int(stem.shape[-1]),
        num_stages=len(dims),
        hidden_sizes=dims,
        depths=depths,
        hidden_act='gelu',
        layer_norm_eps=1e-6,
        layer_scale_init_value=1e-6 if 'stages.0.blocks.0.gamma' in trunk else 0.0,
        drop_path_rate=0.0,
        image_size=image_size,
    )


def convert_open_clip_convnext(
    state_dict: Mapping[str, Any], *, prefix: str | None = None, image_size: int = 512
) -> tuple[dict[str, Tensor], Any]:
    """Convert an open_clip CLIP-ConvNeXt state dict to HF ``ConvNextModel`` weights.

    Depths, widths, patch size, input channels and layer scale are inferred from the keys; every
    HF weight must be produced with the right shape (a 7x7 depthwise kernel, 4x MLP, 2x2
    downsample), otherwise ``ValueError`` names the offending keys. A missing ``head.norm`` (e.g.
    MAE-style trunks) leaves the unused pooled LayerNorm at identity.

    Args:
        state_dict (Mapping): open_clip model weights (``visual.trunk.*``), possibly wrapped in
            ``{'state_dict': ...}`` and/or ``module.``-prefixed; or a bare timm ConvNeXt.
        prefix (str, optional): Trunk prefix; None detects it (see :func:`extract_trunk`).
        image_size (int): ``image_size`` written to the config (REF-VLM runs at 512).

    Returns:
        tuple[dict[str, Tensor], ConvNextConfig]: Contiguous HF weights (source dtype, HF key
        order) and the matching config.
    """
    from transformers import ConvNextModel

    trunk = extract_trunk(state_dict, prefix)
    config = _infer_config(trunk, image_size)
    renamed = _rename(trunk)
    with torch.device('meta'):
        expected = ConvNextModel(config).state_dict()
    for key in _POOLED_NORM:
        if key not in renamed:
            fill = torch.ones if key.endswith('weight') else torch.zeros
            renamed[key] = fill(config.hidden_sizes[-1], dtype=trunk['stem.0.weight'].dtype)
            print_log(f'no head.norm in the trunk: {key} set to identity', logger='current')
    missing = [k for k in expected if k not in renamed]
    extra = [k for k in renamed if k not in expected]
    bad_shape = [
        f'{k}: {tuple(renamed[k].shape)} vs {tuple(v.shape)}'
        for k, v in expected.items()
        if k in renamed and renamed[k].shape != v.shape
    ]
    if missing or extra or bad_shape:
        raise ValueError(
            f'checkpoint does not match the inferred ConvNext (depths '
            f'{config.depths}, dims {config.hidden_sizes}): missing {missing[:8]}, '
            f'unexpected {extra[:8]}, shape mismatches {bad_shape[:8]}'
        )
    hf_sd = OrderedDict((k, renamed[k].contiguous()) for k in expected)
    return hf_sd, config


def convert_checkpoint(
    src: str,
    out_dir: str,
    *,
    prefix: str | None = None,
    image_size: int = 512,
    dtype: str | torch.dtype | None = None,
) -> Any:
    """Convert an open_clip checkpoint file into an HF ``ConvNextModel`` folder.

    Args:
        src (str): ``open_clip_pytorch_model.bin`` / ``.pt`` / ``.safetensors``; loaded
            weights-only (:func:`mmrefvlm.utils.load_state_file`).
        out_dir (str): Output folder; receives ``config.json`` and ``model.safetensors``.
        prefix (str, optional): Trunk prefix (None: detect).
        image_size (int): Config ``image_size``. Default 512.
        dtype (str | torch.dtype, optional): Cast floating weights (default: keep).

    Returns:
        ConvNextConfig: The written config.
    """
    from transformers import ConvNextModel

    print_log(f'loading {src} (weights only)', logger='current')
    hf_sd, config = convert_open_clip_convnext(
        load_state_file(src), prefix=prefix, image_size=image_size
    )
    cast = to_dtype(dtype)
    if cast is not None:
        hf_sd = OrderedDict(
            (k, v.to(cast) if v.is_floating_point() else v) for k, v in hf_sd.items()
        )
    num_params = sum(v.numel() for v in hf_sd.values())
    print_log(
        f'converted {len(hf_sd)} tensors ({num_params / 1e6:.2f}M params): depths '
        f'{config.depths}, dims {config.hidden_sizes}, patch {config.patch_size}',
        logger='current',
    )
    with torch.device('meta'):
        model = ConvNextModel(config)
    model.load_state_dict(hf_sd, strict=True, assign=True)
    model.save_pretrained(out_dir)
    print_log(f'wrote {out_dir}/config.json and model.safetensors', logger='current')
    return config
