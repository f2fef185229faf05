# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
import pytest
import torch
from mmengine.model import BaseModule
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import CLIPConfig, CLIPModel, CLIPVisionConfig, CLIPVisionModel

from mmrefvlm.models.vision import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD, TINY_CLIP_VIT, CLIPViTEncoder
from mmrefvlm.registry import MODELS

TINY3 = dict(TINY_CLIP_VIT, num_hidden_layers=3)  # -2 != -1 != 0


def _hf_grid(tokens: torch.Tensor, side: int) -> torch.Tensor:
    """Reference reshape: token t = r * side + c -> out[:, :, r, c], CLS dropped."""
    b, _, ch = tokens.shape
    out = torch.empty(b, ch, side, side)
    for t in range(side * side):
        out[:, :, t // side, t % side] = tokens[:, 1 + t]
    return out


class _Parent(BaseModule):
    def __init__(self, encoder: nn.Module) -> None:
        super().__init__()
        self.encoder = encoder
        self.head = nn.Linear(encoder.out_channels, 1)

    def forward(self, x):
        return self.head(self.encoder(x).mean((2, 3)))


def test_shapes_and_properties():
    enc = CLIPViTEncoder(config=TINY_CLIP_VIT)
    out = enc(torch.randn(2, 3, 32, 32))
    assert out.shape == (2, 32, 4, 4) and out.dtype == torch.float32
    assert (enc.out_channels, enc.grid_size, enc.num_tokens, enc.image_size) == (32, 4, 16, 32)
    assert enc.mean == OPENAI_CLIP_MEAN and enc.std == OPENAI_CLIP_STD
    # the (B, N, C) token view is a copy-free round trip in row-major order
    assert out.flatten(2).transpose(1, 2).shape == (2, 16, 32)


@pytest.mark.parametrize('select_layer', [-2, -1, 0, 1])
def test_select_layer_matches_hf_hidden_states(select_layer):
    enc = CLIPViTEncoder(config=TINY3, select_layer=select_layer)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        ref = enc.model(pixel_values=x, output_hidden_states=True)
    assert len(ref.hidden_states) == 4
    expected = _hf_grid(ref.hidden_states[select_layer], 4)
    torch.testing.assert_close(enc(x), expected, rtol=0, atol=0)
    if select_layer == -1:
        torch.testing.assert_close(enc(x), _hf_grid(ref.last_hidden_state, 4), rtol=0, atol=0)
    if select_layer == -2:  # penultimate is really different from the last layer
        assert not torch.allclose(expected, _hf_grid(ref.last_hidden_state, 4))


def test_frozen_semantics():
    # dropout 0.5 would make train-mode features random: frozen must keep eval mode
    enc = CLIPViTEncoder(config=dict(TINY_CLIP_VIT, attention_dropout=0.5))
    parent = _Parent(enc)
    parent.train()
    assert parent.training and parent.head.training
    assert not enc.training and not any(m.training for m in enc.modules())
    assert not any(p.requires_grad for p in enc.parameters())
    x = torch.randn(2, 3, 32, 32)
    feats = enc(x)
    # no autograd graph at all, even when the input asks for one (forward under no_grad)
    assert not feats.requires_grad and enc(x.clone().requires_grad_()).grad_fn is None
    torch.testing.assert_close(enc(x), feats, rtol=0, atol=0)
    before = {k: v.clone() for k, v in enc.state_dict().items()}
    head_before = parent.head.weight.detach().clone()
    opt = torch.optim.AdamW(parent.parameters(), lr=0.1, weight_decay=0.5)
    parent(x).sum().backward()
    opt.step()
    assert all(p.grad is None for p in enc.parameters())
    assert all(torch.equal(v, before[k]) for k, v in enc.state_dict().items())
    assert not torch.equal(parent.head.weight, head_before)


def test_unfrozen_trains():
    enc = CLIPViTEncoder(config=TINY_CLIP_VIT, frozen=False)
    parent = _Parent(enc)
    parent.train()
    assert enc.training and enc.model.training
    # select_layer=-2: the last layer and the pooled-output norm never touch the output, so they
    # are frozen; every trainable parameter gets a gradient (DDP-safe without unused params)
    frozen = {n for n, p in enc.named_parameters() if not p.requires_grad}
    assert frozen and all(
        n.startswith(('model.encoder.layers.1.', 'model.post_layernorm.')) for n in frozen
    )
    x = torch.randn(2, 3, 32, 32)
    w0 = enc.model.embeddings.patch_embedding.weight.detach().clone()
    opt = torch.optim.SGD(parent.parameters(), lr=0.1)
    parent(x).sum().backward()
    assert all(p.grad is not None for p in enc.parameters() if p.requires_grad)
    assert enc.model.embeddings.patch_embedding.weight.grad.abs().sum() > 0
    opt.step()
    assert not torch.equal(enc.model.embeddings.patch_embedding.weight, w0)
    parent.eval()
    assert not enc.training


def test_local_path_roundtrip(tmp_path):
    enc = CLIPViTEncoder(config=TINY_CLIP_VIT)
    enc.model.save_pretrained(tmp_path / 'vision')
    again = CLIPViTEncoder(str(tmp_path / 'vision'))
    x = torch.randn(1, 3, 32, 32)
    torch.testing.assert_close(again(x), enc(x), rtol=0, atol=0)
    skeleton = CLIPViTEncoder(str(tmp_path / 'vision'), load_weights=False)
    assert skeleton.out_channels == 32
    assert not torch.equal(
        skeleton.model.embeddings.patch_embedding.weight,
        enc.model.embeddings.patch_embedding.weight,
    )


def test_loads_full_clip_folder(tmp_path):
    # openai/clip-vit-large-patch14-336 is a full CLIPModel (vision_model.* + text_model.* keys)
    text = dict(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=4,
        vocab_size=64,
        bos_token_id=0,
        eos_token_id=1,
        pad_token_id=1,
    )
    full = CLIPModel(CLIPConfig(vision_config=TINY_CLIP_VIT, text_config=text))
    full.save_pretrained(tmp_path)
    enc = CLIPViTEncoder(str(tmp_path))
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        ref = full.vision_model(pixel_values=x, output_hidden_states=True).hidden_states[-2]
    torch.testing.assert_close(enc(x), _hf_grid(ref, 4), rtol=0, atol=0)


def test_missing_weights_is_an_error(tmp_path):
    CLIPVisionModel(CLIPVisionConfig(**TINY_CLIP_VIT)).save_pretrained(tmp_path)
    sd = load_file(tmp_path / 'model.safetensors')
    dropped = [k for k in sd if 'layers.1.' in k]
    save_file(
        {k: v for k, v in sd.items() if k not in dropped},
        tmp_path / 'model.safetensors',
        metadata={'format': 'pt'},
    )
    with pytest.raises(ValueError, match='lacks'):
        CLIPViTEncoder(str(tmp_path))


def test_build_paths_and_errors():
    enc = MODELS.build(dict(type='CLIPViTEncoder', config=TINY_CLIP_VIT, frozen=False))
    assert isinstance(enc, CLIPViTEncoder) and not enc.frozen
    hf = CLIPVisionModel(CLIPVisionConfig(**TINY_CLIP_VIT))
    assert CLIPViTEncoder(model=hf).model is hf
    deeper = CLIPViTEncoder(config=TINY_CLIP_VIT, hf_config_overrides=dict(num_hidden_layers=3))
    assert len(deeper.model.encoder.layers) == 3
    bf16 = CLIPViTEncoder(config=TINY_CLIP_VIT, torch_dtype='bfloat16')
    assert bf16(torch.randn(1, 3, 32, 32)).dtype == torch.bfloat16
    with pytest.raises(ValueError, match='exactly one'):
        CLIPViTEncoder()
    with pytest.raises(ValueError, match='exactly one'):
        CLIPViTEncoder('x', config=TINY_CLIP_VIT)
    with pytest.raises(TypeError, match='CLIPVisionModel'):
        CLIPViTEncoder(model=nn.Linear(2, 2))
    with pytest.raises(ValueError, match='select_layer'):
        CLIPViTEncoder(config=TINY_CLIP_VIT, select_layer=3)
    with pytest.raises(ValueError, match='model_type'):
        CLIPViTEncoder(config=dict(TINY_CLIP_VIT, model_type='clip'))
    with pytest.raises(ValueError, match='mean and std'):
        CLIPViTEncoder(config=TINY_CLIP_VIT, mean=(0.5, 0.5))


def test_parent_init_weights_never_reinitialises_hf_model(monkeypatch):
    enc = CLIPViTEncoder(config=TINY_CLIP_VIT)
    parent = _Parent(enc)
    before = {k: v.clone() for k, v in enc.state_dict().items()}

    def _boom(*args, **kwargs):
        raise AssertionError('PreTrainedModel.init_weights must not be called')

    monkeypatch.setattr(enc.model, 'init_weights', _boom)
    parent.init_weights()
    assert all(torch.equal(v, before[k]) for k, v in enc.state_dict().items())
