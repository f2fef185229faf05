# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""The synchronisation-free ``RefVLM.loss``: same losses and gradients as the previous code path
(``reference_loss``), at most one device->host synchronisation per step, no pageable copy."""

import copy
import warnings

import pytest
import torch

from mmrefvlm.models.unit_decoders import has_two_phase_loss
from mmrefvlm.testing import SyncCounter, demo_unit_inputs, tiny_decoder_cfg

from ..test_datasets.conftest import scene  # noqa: F401  (fixture)
from .reference_loss import OLD_DECODER_LOSSES, reference_loss
from .test_refvlm import TinyBox, answer_record, batch, build

PAIR_AND_MULTI_UNIT = [  # a 2-box group (non-trivial) and a <REF> routed to mask and box
    {'phrase': 'two squares', 'groups': [{'units': ['box'], 'n': 2, 'targets': [1, 0]}]},
    ' and ',
    {'phrase': 'the red one', 'groups': [{'units': ['mask', 'box'], 'n': 1, 'targets': [0]}]},
    '.',
]
MIXED = [  # mask and keypoint pairs in one triplet, an empty group, an image-level depth
    {
        'phrase': 'both',
        'groups': [
            {'units': ['mask'], 'n': 2, 'targets': [0, 1]},
            {'units': ['keypoint'], 'n': 2, 'targets': [1, 0]},
        ],
    },
    ', ',
    {'phrase': 'a cow', 'groups': [{'units': ['box'], 'n': 0}]},
    ' in ',
    {'phrase': 'the scene', 'groups': [{'units': ['depth'], 'n': 1, 'targets': [None]}]},
]
TRIPLE = [  # three refs in one group, each to box and keypoint; a 2-ref depth group
    {'phrase': 'squares', 'groups': [{'units': ['box', 'keypoint'], 'n': 3, 'targets': [0, 1, 0]}]},
    ' ',
    {'phrase': 'their depth', 'groups': [{'units': ['depth'], 'n': 2, 'targets': [1, 0]}]},
]
SINGLES = [  # only groups of one: no solver call at all
    {'phrase': 'the red one', 'groups': [{'units': ['box'], 'n': 1, 'targets': [0]}]},
    ' ',
    {'phrase': 'the blue one', 'groups': [{'units': ['mask'], 'n': 1, 'targets': [1]}]},
]
PROMPT = [{'type': 'box', 'box': [4, 6, 14, 16]}]


def units_model(**kw):
    decoders = {}
    for unit in ('box', 'mask', 'keypoint', 'depth'):
        cfg = tiny_decoder_cfg(unit)
        for key in ('in_channels', 'pyramid_channels', 'clip_channels'):
            cfg.pop(key)  # RefVLM fills them from the LLM and the encoders
        if 'dropout' in cfg:
            cfg['dropout'] = 0.0
        decoders[unit] = cfg
    kw.setdefault('unit_decoders', decoders)
    weights = dict(llm=1.0, box=0.5, mask=0.5, keypoint=1.0, depth=1.0)
    kw.setdefault(
        'loss_weights', {k: v for k, v in weights.items() if k in ('llm', *kw['unit_decoders'])}
    )
    return build(**kw)


def text_record(scene, image=True):
    rec = answer_record(scene, 'Two squares.')
    if not image:
        for key in ('image', 'depth'):
            rec.pop(key)
        rec['instances'] = []
    return rec


def records(scene, case):
    if case == 'all_units':
        return [
            answer_record(scene, PAIR_AND_MULTI_UNIT),
            answer_record(scene, MIXED),
            text_record(scene),
            answer_record(scene, TRIPLE, PROMPT),
        ]
    if case == 'box_only_and_text':  # mask/keypoint/depth decoders on fake inputs
        return [text_record(scene, image=False), answer_record(scene, PAIR_AND_MULTI_UNIT[:1])]
    if case == 'text_only':
        return [text_record(scene), text_record(scene, image=False)]
    if case == 'singles':
        return [answer_record(scene, SINGLES), answer_record(scene, MIXED[2:])]
    raise ValueError(case)


def losses_and_grads(model, run):
    model.zero_grad(set_to_none=True)
    losses = run()
    sum(losses.values()).backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return {k: v.detach() for k, v in losses.items()}, grads


def assert_same(new, ref):
    (loss_a, grad_a), (loss_b, grad_b) = new, ref
    assert list(loss_a) == list(loss_b)  # same keys in the same order (the log)
    for key in loss_a:
        torch.testing.assert_close(loss_a[key], loss_b[key], atol=1e-6, rtol=1e-5, msg=key)
    assert set(grad_a) == set(grad_b)
    for name in grad_a:
        torch.testing.assert_close(grad_a[name], grad_b[name], atol=1e-6, rtol=1e-4, msg=name)


def compare(model, data):
    new = losses_and_grads(model, lambda: model(**data, mode='loss'))
    ref = losses_and_grads(
        model, lambda: reference_loss(model, data['inputs'], data['data_samples'])
    )
    assert_same(new, ref)
    return new[0]


@pytest.mark.parametrize('case', ['all_units', 'box_only_and_text', 'text_only', 'singles'])
def test_losses_and_gradients_match_the_previous_path(scene, case):
    model = units_model()
    losses = compare(model, batch(scene, model, records(scene, case)))
    active = {k.split('_')[1] for k, v in losses.items() if k != 'loss_llm' and v.item() != 0}
    expected = dict(
        all_units={'box', 'mask', 'keypoint', 'depth'},
        box_only_and_text={'box'},
        text_only=set(),
        singles={'box', 'mask', 'depth'},
    )[case]
    assert active == expected


@pytest.mark.parametrize(
    'router', [dict(phrase_pooling=True), dict(ref_position='emitting', phrase_pooling=True)]
)
def test_router_options_match_the_previous_path(scene, router):
    model = units_model(router=dict(type='LatentEmbeddingRouter', **router))
    compare(model, batch(scene, model, records(scene, 'all_units')))


def test_one_call_decoder_plugin_still_works(scene):
    # A decoder written against the one-call contract (no loss_costs / loss_assigned) next to
    # two-phase decoders: called through its own loss, same result as before.
    decoders = dict(box=TinyBox(32), mask=units_model().unit_decoders.mask)
    model = units_model(unit_decoders=decoders)
    assert not has_two_phase_loss(model.unit_decoders.box)
    compare(model, batch(scene, model, records(scene, 'all_units')[:1]))


def test_precomputed_host_data_is_optional(scene):
    model = units_model()
    data = batch(scene, model, records(scene, 'all_units'))
    assert all('label_refs' in s for s in data['data_samples'])
    with torch.no_grad():
        full = model(**data, mode='loss')
        bare = copy.copy(data)
        bare['inputs'] = {k: v for k, v in data['inputs'].items() if k != 'host'}
        bare['data_samples'] = [copy.deepcopy(s) for s in data['data_samples']]
        for s in bare['data_samples']:
            del s.label_refs
        fallback = model(**bare, mode='loss')
    assert list(full) == list(fallback)
    for key in full:
        assert torch.equal(full[key], fallback[key]), key


def test_loss_synchronises_at_most_once(scene):
    model = units_model()
    data = batch(scene, model, records(scene, 'all_units'))
    with SyncCounter() as counter:
        losses = model(**data, mode='loss')
    assert counter.num_syncs == 1, counter.report()  # the costs of every non-trivial group
    assert counter.of_kind('d2h')[0].where.split(' ')[-1] == '(solve_assignments)'
    assert counter.num_h2d_pageable == 0, counter.report()
    sum(losses.values()).backward()  # still a normal graph


def test_all_trivial_groups_never_synchronise(scene):
    model = units_model()
    data = batch(scene, model, records(scene, 'singles'))
    with SyncCounter() as counter:
        model(**data, mode='loss')
    assert counter.num_syncs == 0 and counter.num_h2d_pageable == 0, counter.report()


def test_previous_path_synchronised_per_sample_and_decoder(scene):
    # What the counter sees on the reference path: the reason for the change.
    model = units_model()
    data = batch(scene, model, records(scene, 'all_units'))
    with SyncCounter() as counter:
        reference_loss(model, data['inputs'], data['data_samples'])
    assert counter.num_syncs > 20 and counter.num_h2d_pageable > 5


@pytest.mark.parametrize('unit', ['box', 'mask', 'keypoint', 'depth'])
def test_decoder_loss_on_its_own_matches_the_previous_code(unit):
    # Without a host layout (a decoder called on its own, e.g. by plugin tests) the two-phase
    # loss builds the layout from the device tensors: same numbers as the previous loss.
    torch.manual_seed(0)
    from mmrefvlm.registry import MODELS

    decoder = MODELS.build(
        tiny_decoder_cfg(unit) | dict(dropout=0.0) if unit != 'depth' else tiny_decoder_cfg(unit)
    )
    queries, visual, samples = demo_unit_inputs(unit, num_queries=(3, 2, 1))
    old = OLD_DECODER_LOSSES[type(decoder)]
    new_losses, ref_losses = (
        decoder.loss(queries, visual, samples),
        old(decoder, queries, visual, samples),
    )
    assert list(new_losses) == list(ref_losses)
    for key in new_losses:
        torch.testing.assert_close(new_losses[key], ref_losses[key], atol=1e-6, rtol=1e-5)


# ----------------------------------------------------------------------------- GPU twins
# (skipped without CUDA by the repository conftest; run by ``make gpu-check``)
def _cuda_batch(scene, model):
    model = model.cuda()
    return model, batch(scene, model, records(scene, 'all_units'))


@pytest.mark.gpu
def test_gpu_loss_synchronises_at_most_once(scene, gpu_report):
    model, data = _cuda_batch(scene, units_model())
    model(**data, mode='loss')  # warm-up: lazy CUDA / cuBLAS initialisation
    torch.cuda.synchronize()
    with SyncCounter(simulate=False) as counter:
        model(**data, mode='loss')
    assert counter.num_syncs <= 1 and counter.num_h2d_pageable == 0, counter.report()
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode('warn')
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter('always')
            model(**data, mode='loss')
    finally:
        torch.cuda.set_sync_debug_mode('default')
    syncs = [w for w in caught if 'synchroniz' in str(w.message)]
    gpu_report(
        'sync_free_loss',
        counter_syncs=counter.num_syncs,
        counter_h2d_pageable=counter.num_h2d_pageable,
        cuda_sync_warnings=len(syncs),
    )
    assert len(syncs) <= 1, [f'{w.filename}:{w.lineno}' for w in syncs]


@pytest.mark.gpu
def test_gpu_losses_match_the_previous_path(scene, no_tf32):
    model, data = _cuda_batch(scene, units_model())
    new = losses_and_grads(model, lambda: model(**data, mode='loss'))
    ref = losses_and_grads(
        model, lambda: reference_loss(model, data['inputs'], data['data_samples'])
    )
    (loss_a, grad_a), (loss_b, grad_b) = new, ref
    for key in loss_a:
        torch.testing.assert_close(loss_a[key], loss_b[key], atol=1e-5, rtol=1e-4, msg=key)
    for name in grad_a:
        torch.testing.assert_close(grad_a[name], grad_b[name], atol=1e-5, rtol=1e-3, msg=name)


def test_logged_losses_are_read_back_in_one_copy(scene):
    from mmengine.model import BaseModel

    model = units_model()
    data = batch(scene, model, records(scene, 'all_units'))
    losses = model(**data, mode='loss')
    ref_loss, ref_vars = BaseModel.parse_losses(model, losses)
    with SyncCounter() as counter:
        loss, log_vars = model.parse_losses(losses)
    assert counter.num_syncs == 1, counter.report()  # was one .item() per key in the hooks
    assert loss is not None and torch.equal(loss, ref_loss)
    assert list(log_vars) == list(ref_vars)
    assert all(isinstance(v, float) for v in log_vars.values())
    assert [v for v in log_vars.values()] == pytest.approx([v.item() for v in ref_vars.values()])
