# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""The open_clip -> HF ConvNext converter against an independent functional timm-layout forward."""

import importlib.util
import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from transformers import ConvNextModel

from mmrefvlm.models.vision import ConvNeXtPyramid, convert_open_clip_convnext

_TOOL = Path(__file__).parents[3] / 'tools' / 'model_converters' / 'open_clip_convnext_to_hf.py'


def _load_tool():
    spec = importlib.util.spec_from_file_location('open_clip_convnext_to_hf', _TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def make_timm_convnext(depths, dims, *, patch=4, gamma=True, conv_mlp=False, seed=0):
    """Random timm-layout ConvNeXt weights (keys as timm's ConvNeXt names them)."""
    g = torch.Generator().manual_seed(seed)

    def rnd(*shape, scale=0.2, offset=0.0):
        return torch.randn(*shape, generator=g) * scale + offset

    sd = {
        'stem.0.weight': rnd(dims[0], 3, patch, patch),
        'stem.0.bias': rnd(dims[0], scale=0.1),
        'stem.1.weight': rnd(dims[0], scale=0.1, offset=1),
        'stem.1.bias': rnd(dims[0], scale=0.1),
    }
    for i, (depth, c) in enumerate(zip(depths, dims, strict=True)):
        if i > 0:
            sd[f'stages.{i}.downsample.0.weight'] = rnd(dims[i - 1], scale=0.1, offset=1)
            sd[f'stages.{i}.downsample.0.bias'] = rnd(dims[i - 1], scale=0.1)
            sd[f'stages.{i}.downsample.1.weight'] = rnd(c, dims[i - 1], 2, 2)
            sd[f'stages.{i}.downsample.1.bias'] = rnd(c, scale=0.1)
        for j in range(depth):
            p = f'stages.{i}.blocks.{j}.'
            sd[p + 'conv_dw.weight'] = rnd(c, 1, 7, 7)
            sd[p + 'conv_dw.bias'] = rnd(c, scale=0.1)
            sd[p + 'norm.weight'] = rnd(c, scale=0.1, offset=1)
            sd[p + 'norm.bias'] = rnd(c, scale=0.1)
            fc1, fc2 = rnd(4 * c, c), rnd(c, 4 * c)
            sd[p + 'mlp.fc1.weight'] = fc1[..., None, None] if conv_mlp else fc1
            sd[p + 'mlp.fc1.bias'] = rnd(4 * c, scale=0.1)
            sd[p + 'mlp.fc2.weight'] = fc2[..., None, None] if conv_mlp else fc2
            sd[p + 'mlp.fc2.bias'] = rnd(c, scale=0.1)
            if gamma:
                sd[p + 'gamma'] = rnd(c, scale=0.1, offset=0.5)
    sd['head.norm.weight'] = rnd(dims[-1], scale=0.1, offset=1)
    sd['head.norm.bias'] = rnd(dims[-1], scale=0.1)
    return sd


def as_open_clip(trunk):
    """Wrap trunk weights as open_clip does, with a projection head and text-tower keys."""
    sd = {f'visual.trunk.{k}': v for k, v in trunk.items()}
    c = trunk['head.norm.weight'].shape[0]
    sd.update(
        {
            'visual.head.mlp.fc1.weight': torch.randn(8, c),
            'visual.head.mlp.fc1.bias': torch.randn(8),
            'visual.head.mlp.fc2.weight': torch.randn(4, 8),
            'visual.head.mlp.fc2.bias': torch.randn(4),
            'logit_scale': torch.tensor(4.6),
            'token_embedding.weight': torch.randn(10, 4),
            'positional_embedding': torch.randn(7, 4),
            'transformer.resblocks.0.attn.in_proj_weight': torch.randn(12, 4),
            'ln_final.weight': torch.ones(4),
            'text_projection': torch.randn(4, 4),
        }
    )
    return sd


def _ln2d(x, w, b):
    return F.layer_norm(x.permute(0, 2, 3, 1), (x.shape[1],), w, b, 1e-6).permute(0, 3, 1, 2)


def reference_stage_outputs(sd, x):
    """Functional timm ConvNeXt forward straight from the timm-named weights."""
    x = F.conv2d(x, sd['stem.0.weight'], sd['stem.0.bias'], stride=sd['stem.0.weight'].shape[-1])
    x = _ln2d(x, sd['stem.1.weight'], sd['stem.1.bias'])
    outs, i = [], 0
    while f'stages.{i}.blocks.0.conv_dw.weight' in sd:
        if f'stages.{i}.downsample.0.weight' in sd:
            x = _ln2d(x, sd[f'stages.{i}.downsample.0.weight'], sd[f'stages.{i}.downsample.0.bias'])
            x = F.conv2d(
                x,
                sd[f'stages.{i}.downsample.1.weight'],
                sd[f'stages.{i}.downsample.1.bias'],
                stride=2,
            )
        j = 0
        while f'stages.{i}.blocks.{j}.conv_dw.weight' in sd:
            p, c = f'stages.{i}.blocks.{j}.', x.shape[1]
            y = F.conv2d(x, sd[p + 'conv_dw.weight'], sd[p + 'conv_dw.bias'], padding=3, groups=c)
            y = F.layer_norm(
                y.permute(0, 2, 3, 1), (c,), sd[p + 'norm.weight'], sd[p + 'norm.bias'], 1e-6
            )
            y = F.linear(y, sd[p + 'mlp.fc1.weight'].reshape(4 * c, c), sd[p + 'mlp.fc1.bias'])
            y = F.linear(
                F.gelu(y), sd[p + 'mlp.fc2.weight'].reshape(c, 4 * c), sd[p + 'mlp.fc2.bias']
            )
            if p + 'gamma' in sd:
                y = y * sd[p + 'gamma']
            x = x + y.permute(0, 3, 1, 2)
            j += 1
        outs.append(x)
        i += 1
    return outs


@pytest.mark.parametrize('fmt', ['bin', 'safetensors'])
def test_cli_conversion_matches_functional_reference(tmp_path, fmt):
    trunk = make_timm_convnext([1, 1, 1, 1], [16, 32, 64, 128])
    src = tmp_path / f'open_clip_pytorch_model.{fmt}'
    ckpt = as_open_clip(trunk)
    if fmt == 'bin':
        torch.save(ckpt, src)
    else:
        save_file(ckpt, src)
    out_dir = tmp_path / 'hf'
    assert _load_tool().main([str(src), str(out_dir), '--image-size', '64']) == 0
    cfg = json.loads((out_dir / 'config.json').read_text())
    assert cfg['model_type'] == 'convnext' and cfg['depths'] == [1, 1, 1, 1]
    assert cfg['hidden_sizes'] == [16, 32, 64, 128] and cfg['image_size'] == 64
    assert (out_dir / 'model.safetensors').is_file()
    pyr = ConvNeXtPyramid(name_or_path=str(out_dir))
    x = torch.randn(2, 3, 64, 64)
    got = pyr(x)
    ref = reference_stage_outputs(trunk, x)
    assert len(got) == len(ref) == 4
    for a, b in zip(got, ref, strict=True):
        assert a.shape == b.shape
        torch.testing.assert_close(a, b, rtol=0, atol=1e-5)
    torch.testing.assert_close(pyr.model.layernorm.weight, trunk['head.norm.weight'])


@pytest.mark.parametrize('gamma,conv_mlp', [(False, False), (True, True)])
def test_function_infers_arch_and_variants(gamma, conv_mlp):
    trunk = make_timm_convnext(
        [2, 1, 3, 1], [8, 16, 24, 32], gamma=gamma, conv_mlp=conv_mlp, seed=1
    )
    wrapped = {'state_dict': {f'module.{k}': v for k, v in as_open_clip(trunk).items()}}
    hf_sd, cfg = convert_open_clip_convnext(wrapped, image_size=64)
    assert list(cfg.depths) == [2, 1, 3, 1] and list(cfg.hidden_sizes) == [8, 16, 24, 32]
    assert (cfg.layer_scale_init_value > 0) == gamma and cfg.layer_norm_eps == 1e-6
    model = ConvNextModel(cfg).eval()
    model.load_state_dict(hf_sd, strict=True)
    x = torch.randn(1, 3, 64, 64)
    got = ConvNeXtPyramid(model=model)(x)
    for a, b in zip(got, reference_stage_outputs(trunk, x), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-5)


def test_bare_timm_trunk_without_head_norm():
    trunk = make_timm_convnext([1, 1, 1, 1], [8, 8, 16, 16])
    del trunk['head.norm.weight'], trunk['head.norm.bias']
    hf_sd, cfg = convert_open_clip_convnext(trunk)
    assert torch.equal(hf_sd['layernorm.weight'], torch.ones(16))
    assert cfg.image_size == 512


def test_errors_name_the_keys(tmp_path):
    trunk = make_timm_convnext([1, 1, 1, 1], [8, 8, 16, 16])
    with pytest.raises(ValueError, match='no HF ConvNext counterpart.*stem.2.weight'):
        convert_open_clip_convnext(dict(trunk, **{'stem.2.weight': torch.ones(1)}))
    broken = dict(trunk)
    del broken['stages.2.blocks.0.mlp.fc1.bias']
    with pytest.raises(ValueError, match=r'missing \[.*stages.2.layers.0.pwconv1.bias'):
        convert_open_clip_convnext(broken)
    with pytest.raises(ValueError, match='shape mismatches.*dwconv'):
        convert_open_clip_convnext(
            dict(trunk, **{'stages.1.blocks.0.conv_dw.weight': torch.ones(8, 1, 5, 5)})
        )
    with pytest.raises(ValueError, match='unexpected.*downsampling_layer'):  # stage 0 is stride 1
        convert_open_clip_convnext(dict(trunk, **{'stages.0.downsample.0.weight': torch.ones(8)}))
    with pytest.raises(ValueError, match='no ConvNeXt trunk'):
        convert_open_clip_convnext({'visual.conv1.weight': torch.ones(1)})
    tool = _load_tool()
    with pytest.raises(SystemExit, match='does not exist'):
        tool.main([str(tmp_path / 'nope.bin'), str(tmp_path / 'out')])
    unsafe = tmp_path / 'unsafe.bin'
    torch.save({'visual.trunk.stem.0.weight': torch.ones(1), 'cfg': _Opaque()}, unsafe)
    with pytest.raises(SystemExit, match='Refused'):
        tool.main([str(unsafe), str(tmp_path / 'out')])


class _Opaque:
    """An object a weights-only load refuses."""
