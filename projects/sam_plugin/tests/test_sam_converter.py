# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""Official SAM checkpoint -> HF ``SamModel``: every key and shape, and identical outputs to a
functional reference of the official forward."""

import pytest
import torch

from projects.sam_plugin.sam_unit import (
    SamMaskUnitDecoder,
    build_sam_model,
    convert_official_sam_state,
    load_official_sam_checkpoint,
    sam_config_dict,
)

from .sam_reference import (
    TINY_SAM,
    official_tiny_sam_state,
    reference_image_encoder,
    reference_mask_decoder,
)


@pytest.fixture(scope='module')
def official():
    return official_tiny_sam_state(seed=0)


@pytest.fixture(scope='module')
def checkpoint(official, tmp_path_factory):
    path = tmp_path_factory.mktemp('sam') / 'sam_tiny_official.pth'
    torch.save(official, path)
    return str(path)


def test_converter_maps_every_official_key_with_its_shape(official):
    hf = build_sam_model(None, TINY_SAM).state_dict()
    converted = convert_official_sam_state(official)
    assert set(converted) == set(hf)
    for key, value in hf.items():
        assert tuple(converted[key].shape) == tuple(value.shape), key
    # a bijection apart from the position code, which HF keeps twice
    assert len(converted) == len(official) + 1


def test_converter_prefix_and_unknown_keys(official):
    lisa_style = {f'visual_model.{k}': v for k, v in official.items()}
    lisa_style['lm_head.weight'] = torch.zeros(1)
    assert (
        convert_official_sam_state(lisa_style, prefix='visual_model.').keys()
        == convert_official_sam_state(official).keys()
    )
    with pytest.raises(ValueError, match='not an official SAM key'):
        convert_official_sam_state({'image_encoderx.w': torch.zeros(1)})


def test_loading_rejects_a_checkpoint_of_another_size(checkpoint):
    model = build_sam_model(
        None, dict(TINY_SAM, mask_decoder_config=dict(TINY_SAM['mask_decoder_config'], mlp_dim=48))
    )
    with pytest.raises(ValueError, match='shape mismatches'):
        load_official_sam_checkpoint(model, checkpoint)


def test_converted_model_matches_the_official_forward(official, checkpoint):
    decoder = SamMaskUnitDecoder(16, sam=TINY_SAM, checkpoint=checkpoint).eval()
    torch.manual_seed(0)
    pixels = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        ours = decoder.sam.vision_encoder(pixels)[0]
        ref = reference_image_encoder(official, pixels)
        torch.testing.assert_close(ours, ref, atol=1e-4, rtol=1e-4)
        sparse = torch.randn(2, 32)
        logits = decoder._decode(sparse, ref)
        for i in range(2):
            exp = reference_mask_decoder(official, ref[i : i + 1], sparse[i : i + 1, None])
            torch.testing.assert_close(logits[i : i + 1], exp, atol=1e-4, rtol=1e-4)
    assert logits.shape == (2, 32, 32)  # 4 x the 8 x 8 embedding grid


def test_presets_follow_the_official_models():
    cfg = sam_config_dict('sam_vit_l')
    assert cfg['vision_config']['hidden_size'] == 1024
    assert cfg['vision_config']['global_attn_indexes'] == [5, 11, 17, 23]
    assert cfg['prompt_encoder_config']['hidden_size'] == 256
    assert cfg['vision_config']['num_pos_feats'] == 128
    with pytest.raises(ValueError, match='unknown SAM preset'):
        sam_config_dict('sam_vit_x')
