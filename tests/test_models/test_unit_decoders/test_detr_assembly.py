# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""The shared DETR assembly: the box, keypoint and mask decoders on it give exactly the outputs,
losses, gradients and predictions of their pre-assembly code (``legacy_decoders``) on the same
weights; checkpoints of the old key layout load; the flat spelling builds the same modules."""

import copy

import pytest
import torch
from mmengine.runner import load_checkpoint
from torch import nn

from mmrefvlm.models.unit_decoders import (
    BoxUnitDecoder,
    DetrAssembly,
    KeypointUnitDecoder,
    MaskUnitDecoder,
    QueryDecoder,
)
from mmrefvlm.models.unit_decoders.detr import compose_detr_blocks, rename_legacy_keys
from mmrefvlm.registry import MODELS
from mmrefvlm.testing import (
    DEMO_CLIP_CHANNELS,
    DEMO_IN_CHANNELS,
    DEMO_PYRAMID_CHANNELS,
    demo_unit_inputs,
    tiny_decoder_cfg,
)
from tests.test_models.test_unit_decoders.legacy_decoders import LEGACY

# Tiny decoders in the flat spelling of the pre-assembly code (what the legacy modules read).
_COMMON = dict(
    in_channels=DEMO_IN_CHANNELS,
    num_queries=4,
    pyramid_channels=DEMO_PYRAMID_CHANNELS,
    clip_channels=DEMO_CLIP_CHANNELS,
    d_model=32,
    num_layers=1,
    num_heads=4,
    ffn_dim=64,
    dropout=0.1,
)
_MEMORY = dict(memory_levels=(0, 1, 2), memory_use_clip=True, memory_size=8)
_KPT = dict(type='KeypointUnitDecoder', num_keypoints=5, sigmas=0.05, num_point_layers=1)
CASES = {
    'box': dict(type='BoxUnitDecoder', **_COMMON, **_MEMORY),
    'box_pointer': dict(type='BoxUnitDecoder', box_head='pointer', **_COMMON, **_MEMORY),
    'keypoint': dict(**_KPT, **_COMMON, **_MEMORY),
    'keypoint_pointer': dict(**_KPT, box_head='pointer', **_COMMON, **_MEMORY),
    'mask': dict(
        type='MaskUnitDecoder', pixel_levels=(0, 1, 2), fpn_dim=16, mask_dim=16, match_size=16,
        **_COMMON,
    ),
}  # fmt: skip


def _pair(case, seed=0):
    cfg = CASES[case]
    unit = case.split('_')[0]
    torch.manual_seed(seed)
    new = MODELS.build(copy.deepcopy(cfg))
    torch.manual_seed(seed)
    old = LEGACY[unit](cfg)
    return unit, new, old


def _inputs(unit):
    return demo_unit_inputs(unit, num_queries=(3, 2), num_keypoints=5)


@pytest.mark.parametrize('case', sorted(CASES))
def test_same_seed_same_weights_and_old_keys_load(case):
    unit, new, old = _pair(case)
    renamed = rename_legacy_keys(old.state_dict(), type(new).legacy_keys)
    assert list(renamed) == list(new.state_dict())  # same modules, same order
    for key, value in renamed.items():
        assert torch.equal(value, new.state_dict()[key]), key
    torch.manual_seed(1)
    fresh = MODELS.build(copy.deepcopy(CASES[case]))
    key = 'predictor.query_proj.proj.weight'
    assert not torch.equal(fresh.state_dict()[key], renamed[key])
    fresh.load_state_dict(old.state_dict(), strict=True)  # the pre-hook renames
    for key, value in renamed.items():
        assert torch.equal(fresh.state_dict()[key], value), key


@pytest.mark.parametrize('case', sorted(CASES))
def test_outputs_losses_grads_predictions_equal_the_old_code(case):
    unit, new, old = _pair(case, seed=3)
    torch.manual_seed(5)
    for p in old.parameters():  # move every weight away from its init
        p.data.add_(0.05 * torch.randn_like(p))
    new.load_state_dict(old.state_dict(), strict=True)
    new.eval(), old.eval()
    queries, visual, samples = _inputs(unit)
    out_new, out_old = new(queries, visual), old(queries, visual)
    assert list(out_new) == list(out_old)
    for key in out_new:
        assert torch.equal(out_new[key], out_old[key]), key
    reference = copy.deepcopy(new)
    reference.forward = old.forward  # the old forward, with the (unchanged) loss code
    loss_new = new.loss(queries, visual, samples)
    loss_old = reference.loss(queries, visual, samples)
    assert list(loss_new) == list(loss_old)
    for key in loss_new:
        assert torch.equal(loss_new[key], loss_old[key]), key
    sum(loss_new.values()).backward()
    sum(loss_old.values()).backward()
    old_grads = rename_legacy_keys(
        {k: p.grad for k, p in old.named_parameters()}, type(new).legacy_keys
    )
    for name, param in new.named_parameters():
        assert torch.equal(param.grad, old_grads[name]), name
    for rescale in (True, False):
        pred_new = new.predict(queries, visual, samples, rescale=rescale)
        pred_old = reference.predict(queries, visual, samples, rescale=rescale)
        for a, b in zip(pred_new, pred_old, strict=True):
            assert set(a.keys()) == set(b.keys())
            for key in a.keys():
                assert torch.equal(a.get(key), b.get(key)), key


def test_old_checkpoint_file_loads_through_mmengine(tmp_path):
    """A RefVLM-style checkpoint (``unit_decoders.<unit>.*`` keys of the old layout) loads with
    MMEngine's ``load_checkpoint`` (strict): the pre-hooks run inside nested modules too."""
    olds, news = nn.ModuleDict(), nn.ModuleDict()
    for case in ('box', 'keypoint', 'mask'):
        unit, new, old = _pair(case, seed=7)
        olds[unit], news[unit] = old, MODELS.build(copy.deepcopy(CASES[case]))
    wrapper_old, wrapper_new = nn.Module(), nn.Module()
    wrapper_old.unit_decoders, wrapper_new.unit_decoders = olds, news
    path = tmp_path / 'old.pth'
    torch.save(dict(state_dict=wrapper_old.state_dict(), meta={}), path)
    load_checkpoint(wrapper_new, str(path), map_location='cpu', strict=True)
    queries, visual, _ = _inputs('box')
    news.eval(), olds.eval()
    assert torch.equal(news['box'](queries, visual)['boxes'], olds['box'](queries, visual)['boxes'])


def test_keypoint_init_from_an_old_box_checkpoint():
    _, box_new, box_old = _pair('box', seed=2)
    kpt = MODELS.build(copy.deepcopy(CASES['keypoint'])).eval()
    report = kpt.init_from_box_decoder(box_old.state_dict())  # predictor.box_head.* keys
    assert not report['skipped'] and not report['missing']
    assert 'predictor.head.box.layers.0.weight' in report['loaded']
    queries, visual, _ = _inputs('keypoint')
    torch.testing.assert_close(
        kpt(queries, visual)['boxes'], box_new.eval()(queries, visual)['boxes']
    )


FLAT = dict(  # the flat spelling of earlier releases
    box=dict(num_layers=1, num_heads=4, ffn_dim=64, dropout=0.1, memory_levels=(0, 1, 2),
             memory_use_clip=True, memory_size=8, box_head='pointer'),
    keypoint=dict(num_layers=1, num_heads=4, ffn_dim=64, dropout=0.1, memory_size=8,
                  num_point_layers=2, box_head='pointer', num_keypoints=5, sigmas=0.05),
    mask=dict(num_layers=1, num_heads=4, ffn_dim=64, dropout=0.1, pixel_levels=(0, 1, 2),
              pixel_use_clip=True, fpn_dim=16, mask_dim=16, memory_levels=(1,), memory_size=4),
)  # fmt: skip
COMPOSED = dict(
    box=dict(memory=dict(size=8), decoder=dict(num_layers=1, num_heads=4, ffn_dim=64),
             head=dict(box_head='pointer')),
    keypoint=dict(memory=dict(size=8), decoder=dict(num_layers=1, num_heads=4, ffn_dim=64),
                  head=dict(box_head='pointer', point_decoder=dict(num_layers=2)),
                  num_keypoints=5, sigmas=0.05),
    mask=dict(memory=dict(levels=(1,), size=4), decoder=dict(num_layers=1, num_heads=4, ffn_dim=64),
              head=dict(fpn_dim=16, mask_dim=16)),
)  # fmt: skip
TYPES = dict(box=BoxUnitDecoder, keypoint=KeypointUnitDecoder, mask=MaskUnitDecoder)


@pytest.mark.parametrize('unit', sorted(FLAT))
def test_flat_and_composed_spellings_build_the_same_decoder(unit):
    common = dict(
        in_channels=32,
        num_queries=4,
        d_model=32,
        pyramid_channels=(8, 16, 24, 32),
        clip_channels=24,
    )
    torch.manual_seed(0)
    flat = TYPES[unit](**common, **FLAT[unit])
    torch.manual_seed(0)
    composed = TYPES[unit](**common, **COMPOSED[unit])
    flat_sd, comp_sd = flat.state_dict(), composed.state_dict()
    assert list(flat_sd) == list(comp_sd)
    assert all(torch.equal(flat_sd[k], comp_sd[k]) for k in flat_sd)
    assert flat.predictor.memory.size == 8 if unit != 'mask' else 4
    if unit == 'keypoint':  # the point decoder inherits heads / FFN of the box stage
        layers = composed.predictor.head.point_decoder.layers.layers
        assert len(layers) == 2 and layers[0].ffn.layers[0][0].out_features == 64


def test_partial_blocks_merge_and_another_type_replaces():
    blocks = compose_detr_blocks(
        'X',
        dict(memory=dict(levels=(), size=None), decoder=dict(num_layers=6, num_heads=8), head={}),
        dict(memory=dict(size=4), decoder=dict(type=QueryDecoder, num_layers=2), head={}),
        dict(num_heads=2),
    )
    assert blocks['memory'] == dict(levels=(), size=4)  # merged over the defaults
    assert blocks['decoder'] == dict(type=QueryDecoder, num_layers=2, num_heads=2)
    custom = dict(type='SomethingElse', depth=3)
    out = compose_detr_blocks('X', dict(memory={}, decoder={}, head=dict(type=nn.Linear)),
                              dict(memory={}, decoder={}, head=custom), {})  # fmt: skip
    assert out['head'] == custom  # another type: used as given


def test_flat_arguments_are_checked():
    cfg = tiny_decoder_cfg('box')
    with pytest.raises(TypeError, match='memory_sise'):
        MODELS.build(dict(cfg, memory_sise=8))
    with pytest.raises(TypeError, match='config dict'):
        MODELS.build(dict(cfg, decoder=QueryDecoder(32, 1, 4, 64), num_heads=2))
    with pytest.raises(ValueError, match='box_head'):
        MODELS.build(dict(cfg, head=dict(box_head='conv')))


def test_built_blocks_and_no_decoder():
    queries, visual, _ = _inputs('box')
    torch.manual_seed(0)
    head = MODELS.build(dict(type='BoxUnitHead', d_model=32))
    assembly = DetrAssembly(
        32, 4, d_model=32, pyramid_channels=(8, 16, 24, 32), clip_channels=24,
        memory=dict(levels=(0,), size=4), decoder=dict(num_layers=0), head=head,
    )  # fmt: skip
    assert assembly.head is head and assembly.decoder is None
    out = assembly(queries, visual)
    content, pos = assembly.query_proj(queries)
    expected = (content + pos) * queries.mask[..., None]
    torch.testing.assert_close(out.hidden, expected)
    assert out.outputs['boxes'].shape == (2, 4, 4) and out.memory.hw == (4, 4)
    assert (out.outputs['boxes'][~queries.mask] == 0).all()
