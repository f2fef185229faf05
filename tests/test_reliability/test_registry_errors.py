# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""A config naming an unregistered type fails with the closest registered names."""

from __future__ import annotations

import importlib.util

import pytest
from mmengine.registry import DefaultScope, init_default_scope

from mmrefvlm.registry import HOOKS, MODELS
from mmrefvlm.utils.registry_errors import (
    UnregisteredTypeError,
    close_names,
    enrich_registry_error,
    registered_names,
    registry_hints,
)

from .conftest import CONFIGS, TRAIN


def _train_main():
    spec = importlib.util.spec_from_file_location('mmrefvlm_tools_train', TRAIN)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


def test_train_tool_lists_close_names_for_a_typo(tmp_path):
    main = _train_main()
    with pytest.raises(UnregisteredTypeError) as info:
        # --skip-preflight: the config's demo_data is not here, and the typo is what is tested
        main(
            [str(CONFIGS / 'typo_unit_decoder.py'), '--work-dir', str(tmp_path), '--skip-preflight']
        )
    err = info.value
    assert err.type_name == 'BoxUnitDecodr' and err.registry_name == 'model'
    assert err.suggestions[0] == 'BoxUnitDecoder'
    assert "Did you mean 'BoxUnitDecoder'" in str(err)
    assert isinstance(err, KeyError) and isinstance(err.__cause__, KeyError)  # original kept
    assert 'BoxUnitDecodr' in str(err.__cause__)


@pytest.fixture
def scope():
    init_default_scope('mmrefvlm')
    yield
    DefaultScope._instance_dict.pop('mmrefvlm', None)


def test_mmengine_message_hook_typo(scope):
    with pytest.raises(UnregisteredTypeError, match="Did you mean 'SafeCheckpointHook'") as info:
        with registry_hints():
            HOOKS.build(dict(type='SafeCheckpointHok'))
    assert 'mmrefvlm::hook registry' in str(info.value.__cause__)


def test_scoped_type_suggests_from_that_scope(scope):
    with pytest.raises(UnregisteredTypeError) as info:
        with registry_hints():
            MODELS.build(dict(type='mmdet.GIoULos'))
    assert 'mmdet.GIoULoss' in info.value.suggestions


def test_no_close_name_and_unrelated_key_errors(scope):
    with pytest.raises(UnregisteredTypeError, match='No registered name is close'):
        with registry_hints():
            HOOKS.build(dict(type='Zzqxv'))
    with pytest.raises(KeyError) as info:  # an unrelated KeyError passes through untouched
        with registry_hints():
            {}['missing']
    assert type(info.value) is KeyError
    assert enrich_registry_error(ValueError('x is not in the a::b registry')) is None


def test_close_names_and_registered_names():
    names = registered_names(MODELS)
    assert {'BoxUnitDecoder', 'MaskUnitDecoder', 'RefVLM'} <= set(names)
    assert 'BaseModel' in names or 'BaseDataPreprocessor' in names  # from the mmengine parent
    assert close_names('maskunitdecoder', names)[0] == 'MaskUnitDecoder'  # case-insensitive
    assert close_names('Zzqxv', names) == []
