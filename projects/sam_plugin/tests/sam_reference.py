# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""Test helpers: a tiny SAM in the *official* checkpoint layout and a functional reference of the
official SAM forward computed straight from that state dict.

Written from the official segment-anything module definitions (``ImageEncoderViT``,
``PromptEncoder``, ``MaskDecoder``, ``TwoWayTransformer``), independently of the converter under
test and of HF transformers: if the converter maps a tensor to the wrong HF parameter, HF's outputs
differ from these.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

#: The tiny SAM used by the plugin's tests (HF-side overrides for ``sam_config_dict``).
TINY_SAM = dict(
    vision_config=dict(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        global_attn_indexes=[1],
        image_size=64,
        patch_size=8,
        window_size=4,
        output_channels=32,
        initializer_range=0.02,
    ),
    prompt_encoder_config=dict(mask_input_channels=8),
    mask_decoder_config=dict(
        mlp_dim=64, num_hidden_layers=2, num_attention_heads=2, iou_head_hidden_dim=32
    ),
)
EMBED, DEPTH, GLOBAL, WINDOW, IMG, PATCH, OUT = 32, 2, (1,), 4, 64, 8, 32
MASK_IN, TD_DEPTH, TD_MLP, IOU_HIDDEN, NUM_MASK_TOKENS = 8, 2, 64, 32, 4


def official_tiny_sam_state(seed: int = 0) -> dict[str, torch.Tensor]:
    """Random weights of the tiny SAM under the official parameter names and shapes."""
    gen = torch.Generator().manual_seed(seed)
    shapes: dict[str, tuple[int, ...]] = {}
    grid = IMG // PATCH
    enc = 'image_encoder.'
    shapes[enc + 'pos_embed'] = (1, grid, grid, EMBED)
    shapes[enc + 'patch_embed.proj.weight'] = (EMBED, 3, PATCH, PATCH)
    shapes[enc + 'patch_embed.proj.bias'] = (EMBED,)
    for i in range(DEPTH):
        b = f'{enc}blocks.{i}.'
        side = grid if i in GLOBAL else WINDOW
        for norm in ('norm1', 'norm2'):
            shapes[b + norm + '.weight'] = shapes[b + norm + '.bias'] = (EMBED,)
        shapes[b + 'attn.qkv.weight'] = (3 * EMBED, EMBED)
        shapes[b + 'attn.qkv.bias'] = (3 * EMBED,)
        shapes[b + 'attn.proj.weight'], shapes[b + 'attn.proj.bias'] = (EMBED, EMBED), (EMBED,)
        head_dim = EMBED // 2
        shapes[b + 'attn.rel_pos_h'] = shapes[b + 'attn.rel_pos_w'] = (2 * side - 1, head_dim)
        shapes[b + 'mlp.lin1.weight'] = (4 * EMBED, EMBED)
        shapes[b + 'mlp.lin1.bias'] = (4 * EMBED,)
        shapes[b + 'mlp.lin2.weight'] = (EMBED, 4 * EMBED)
        shapes[b + 'mlp.lin2.bias'] = (EMBED,)
    shapes[enc + 'neck.0.weight'] = (OUT, EMBED, 1, 1)
    shapes[enc + 'neck.2.weight'] = (OUT, OUT, 3, 3)
    for i in (1, 3):
        shapes[f'{enc}neck.{i}.weight'] = shapes[f'{enc}neck.{i}.bias'] = (OUT,)
    pe = 'prompt_encoder.'
    shapes[pe + 'pe_layer.positional_encoding_gaussian_matrix'] = (2, OUT // 2)
    for i in range(4):
        shapes[f'{pe}point_embeddings.{i}.weight'] = (1, OUT)
    shapes[pe + 'not_a_point_embed.weight'] = shapes[pe + 'no_mask_embed.weight'] = (1, OUT)
    q = MASK_IN // 4
    for name, shape in (
        ('0.weight', (q, 1, 2, 2)),
        ('0.bias', (q,)),
        ('1.weight', (q,)),
        ('1.bias', (q,)),
        ('3.weight', (MASK_IN, q, 2, 2)),
        ('3.bias', (MASK_IN,)),
        ('4.weight', (MASK_IN,)),
        ('4.bias', (MASK_IN,)),
        ('6.weight', (OUT, MASK_IN, 1, 1)),
        ('6.bias', (OUT,)),
    ):
        shapes[f'{pe}mask_downscaling.{name}'] = shape
    md = 'mask_decoder.'

    def attention(prefix: str, inner: int) -> None:
        for proj in ('q_proj', 'k_proj', 'v_proj'):
            shapes[f'{prefix}.{proj}.weight'] = (inner, OUT)
            shapes[f'{prefix}.{proj}.bias'] = (inner,)
        shapes[f'{prefix}.out_proj.weight'] = (OUT, inner)
        shapes[f'{prefix}.out_proj.bias'] = (OUT,)

    for i in range(TD_DEPTH):
        layer = f'{md}transformer.layers.{i}'
        attention(f'{layer}.self_attn', OUT)
        attention(f'{layer}.cross_attn_token_to_image', OUT // 2)
        attention(f'{layer}.cross_attn_image_to_token', OUT // 2)
        for k in range(1, 5):
            shapes[f'{layer}.norm{k}.weight'] = shapes[f'{layer}.norm{k}.bias'] = (OUT,)
        shapes[f'{layer}.mlp.lin1.weight'] = (TD_MLP, OUT)
        shapes[f'{layer}.mlp.lin1.bias'] = (TD_MLP,)
        shapes[f'{layer}.mlp.lin2.weight'] = (OUT, TD_MLP)
        shapes[f'{layer}.mlp.lin2.bias'] = (OUT,)
    attention(f'{md}transformer.final_attn_token_to_image', OUT // 2)
    shapes[f'{md}transformer.norm_final_attn.weight'] = (OUT,)
    shapes[f'{md}transformer.norm_final_attn.bias'] = (OUT,)
    shapes[md + 'iou_token.weight'] = (1, OUT)
    shapes[md + 'mask_tokens.weight'] = (NUM_MASK_TOKENS, OUT)
    shapes[md + 'output_upscaling.0.weight'] = (OUT, OUT // 4, 2, 2)  # ConvTranspose2d: (in, out)
    shapes[md + 'output_upscaling.0.bias'] = (OUT // 4,)
    shapes[md + 'output_upscaling.1.weight'] = shapes[md + 'output_upscaling.1.bias'] = (OUT // 4,)
    shapes[md + 'output_upscaling.3.weight'] = (OUT // 4, OUT // 8, 2, 2)
    shapes[md + 'output_upscaling.3.bias'] = (OUT // 8,)
    for i in range(NUM_MASK_TOKENS):
        for j, (o, n) in enumerate(((OUT, OUT), (OUT, OUT), (OUT // 8, OUT))):
            shapes[f'{md}output_hypernetworks_mlps.{i}.layers.{j}.weight'] = (o, n)
            shapes[f'{md}output_hypernetworks_mlps.{i}.layers.{j}.bias'] = (o,)
    for j, (o, n) in enumerate(
        ((IOU_HIDDEN, OUT), (IOU_HIDDEN, IOU_HIDDEN), (NUM_MASK_TOKENS, IOU_HIDDEN))
    ):
        shapes[f'{md}iou_prediction_head.layers.{j}.weight'] = (o, n)
        shapes[f'{md}iou_prediction_head.layers.{j}.bias'] = (o,)
    state = {}
    for key, shape in shapes.items():
        scale = 1.0 if key.endswith('gaussian_matrix') else 0.2
        value = torch.randn(shape, generator=gen) * scale
        if key.endswith(
            (
                'norm1.weight',
                'norm2.weight',
                'norm3.weight',
                'norm4.weight',
                'neck.1.weight',
                'neck.3.weight',
                'upscaling.1.weight',
                'norm_final_attn.weight',
            )
        ):
            value = 1.0 + value * 0.5  # LayerNorm gains around 1
        state[key] = value
    return state


# --------------------------------------------------------------------- functional reference
def _ln(x, sd, prefix, eps):
    return F.layer_norm(x, x.shape[-1:], sd[prefix + '.weight'], sd[prefix + '.bias'], eps)


def _ln2d(x, sd, prefix, eps=1e-6):  # official LayerNorm2d: over channels of (B, C, H, W)
    mean = x.mean(1, keepdim=True)
    var = (x - mean).pow(2).mean(1, keepdim=True)
    x = (x - mean) / torch.sqrt(var + eps)
    return sd[prefix + '.weight'][:, None, None] * x + sd[prefix + '.bias'][:, None, None]


def _lin(x, sd, prefix):
    return F.linear(x, sd[prefix + '.weight'], sd[prefix + '.bias'])


def _rel(q, table, size):
    idx = torch.arange(size)[:, None] - torch.arange(size)[None] + size - 1
    return table[idx]  # (size, size, dh)


def _vit_attention(x, sd, prefix, heads):
    b, h, w, c = x.shape
    qkv = _lin(x, sd, prefix + '.qkv').reshape(b, h * w, 3, heads, -1).permute(2, 0, 3, 1, 4)
    q, k, v = qkv.reshape(3, b * heads, h * w, -1).unbind(0)
    attn = (q * (c // heads) ** -0.5) @ k.transpose(-2, -1)
    r_q = q.reshape(b * heads, h, w, -1)
    rel_h = torch.einsum('bhwc,hkc->bhwk', r_q, _rel(q, sd[prefix + '.rel_pos_h'], h))
    rel_w = torch.einsum('bhwc,wkc->bhwk', r_q, _rel(q, sd[prefix + '.rel_pos_w'], w))
    attn = (attn.view(-1, h, w, h, w) + rel_h[..., None] + rel_w[:, :, :, None]).view(
        -1, h * w, h * w
    )
    out = (
        (attn.softmax(-1) @ v).view(b, heads, h, w, -1).permute(0, 2, 3, 1, 4).reshape(b, h, w, -1)
    )
    return _lin(out, sd, prefix + '.proj')


def reference_image_encoder(sd, pixels, heads=2):
    """Official ``ImageEncoderViT`` forward (no window padding needed: window divides grid)."""
    x = F.conv2d(
        pixels,
        sd['image_encoder.patch_embed.proj.weight'],
        sd['image_encoder.patch_embed.proj.bias'],
        stride=PATCH,
    ).permute(0, 2, 3, 1)
    x = x + sd['image_encoder.pos_embed']
    for i in range(DEPTH):
        p = f'image_encoder.blocks.{i}'
        shortcut, y = x, _ln(x, sd, p + '.norm1', 1e-6)
        b, h, w, c = y.shape
        if i not in GLOBAL:  # window partition / unpartition
            n = h // WINDOW
            y = (
                y.view(b, n, WINDOW, n, WINDOW, c)
                .permute(0, 1, 3, 2, 4, 5)
                .reshape(-1, WINDOW, WINDOW, c)
            )
            y = _vit_attention(y, sd, p + '.attn', heads)
            y = y.view(b, n, n, WINDOW, WINDOW, c).permute(0, 1, 3, 2, 4, 5).reshape(b, h, w, c)
        else:
            y = _vit_attention(y, sd, p + '.attn', heads)
        x = shortcut + y
        z = _ln(x, sd, p + '.norm2', 1e-6)
        x = x + _lin(F.gelu(_lin(z, sd, p + '.mlp.lin1')), sd, p + '.mlp.lin2')
    x = F.conv2d(x.permute(0, 3, 1, 2), sd['image_encoder.neck.0.weight'])
    x = _ln2d(x, sd, 'image_encoder.neck.1')
    x = F.conv2d(x, sd['image_encoder.neck.2.weight'], padding=1)
    return _ln2d(x, sd, 'image_encoder.neck.3')


def _attn(q, k, v, sd, prefix, heads):
    q, k, v = (
        _lin(q, sd, prefix + '.q_proj'),
        _lin(k, sd, prefix + '.k_proj'),
        _lin(v, sd, prefix + '.v_proj'),
    )

    def split(t):
        b, n, c = t.shape
        return t.reshape(b, n, heads, c // heads).transpose(1, 2)

    q, k, v = split(q), split(k), split(v)
    out = ((q @ k.transpose(-2, -1)) / math.sqrt(q.shape[-1])).softmax(-1) @ v
    b, _, n, _ = out.shape
    return _lin(out.transpose(1, 2).reshape(b, n, -1), sd, prefix + '.out_proj')


def _mlp(x, sd, prefix, layers=3):
    for j in range(layers):
        x = _lin(x, sd, f'{prefix}.layers.{j}')
        x = F.relu(x) if j < layers - 1 else x
    return x


def reference_dense_pe(sd, side):
    """Official ``PositionEmbeddingRandom(side, side)``: (1, C, side, side)."""
    g = sd['prompt_encoder.pe_layer.positional_encoding_gaussian_matrix']
    c = (torch.arange(side, dtype=torch.float32) + 0.5) / side
    y, x = torch.meshgrid(c, c, indexing='ij')
    coords = (2 * torch.stack([x, y], -1) - 1) @ g * 2 * math.pi
    return torch.cat([coords.sin(), coords.cos()], -1).permute(2, 0, 1)[None]


def reference_mask_decoder(sd, image_emb, sparse, heads=2):
    """Official ``MaskDecoder`` (multimask_output=False) with the dense ``no_mask_embed`` prompt.

    Args:
        image_emb: (1, C, h, w) image embedding.
        sparse: (1, N, C) sparse prompt tokens.

    Returns:
        (1, 4h, 4w) low-resolution mask logits.
    """
    md, side = 'mask_decoder.', image_emb.shape[-1]
    tokens = torch.cat([sd[md + 'iou_token.weight'], sd[md + 'mask_tokens.weight']])[None]
    tokens = torch.cat([tokens, sparse], 1)
    src = image_emb + sd['prompt_encoder.no_mask_embed.weight'].reshape(1, -1, 1, 1)
    keys = src.flatten(2).transpose(1, 2)
    key_pe = reference_dense_pe(sd, side).flatten(2).transpose(1, 2)
    queries = tokens
    for i in range(TD_DEPTH):
        p = f'{md}transformer.layers.{i}'
        if i == 0:
            queries = _attn(queries, queries, queries, sd, p + '.self_attn', heads)
        else:
            q = queries + tokens
            queries = queries + _attn(q, q, queries, sd, p + '.self_attn', heads)
        queries = _ln(queries, sd, p + '.norm1', 1e-5)
        q, k = queries + tokens, keys + key_pe
        queries = _ln(
            queries + _attn(q, k, keys, sd, p + '.cross_attn_token_to_image', heads),
            sd,
            p + '.norm2',
            1e-5,
        )
        mlp = _lin(F.relu(_lin(queries, sd, p + '.mlp.lin1')), sd, p + '.mlp.lin2')
        queries = _ln(queries + mlp, sd, p + '.norm3', 1e-5)
        q, k = queries + tokens, keys + key_pe
        keys = _ln(
            keys + _attn(k, q, queries, sd, p + '.cross_attn_image_to_token', heads),
            sd,
            p + '.norm4',
            1e-5,
        )
    q, k = queries + tokens, keys + key_pe
    queries = queries + _attn(q, k, keys, sd, md + 'transformer.final_attn_token_to_image', heads)
    queries = _ln(queries, sd, md + 'transformer.norm_final_attn', 1e-5)
    x = keys.transpose(1, 2).reshape(1, -1, side, side)
    x = F.conv_transpose2d(
        x, sd[md + 'output_upscaling.0.weight'], sd[md + 'output_upscaling.0.bias'], stride=2
    )
    x = F.gelu(_ln2d(x, sd, md + 'output_upscaling.1'))
    x = F.gelu(
        F.conv_transpose2d(
            x, sd[md + 'output_upscaling.3.weight'], sd[md + 'output_upscaling.3.bias'], stride=2
        )
    )
    hyper = _mlp(queries[:, 1], sd, md + 'output_hypernetworks_mlps.0')  # mask token 0
    return (hyper @ x.flatten(2)).view(1, *x.shape[-2:])
