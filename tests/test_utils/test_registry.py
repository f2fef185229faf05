# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
import subprocess
import sys

from mmengine.registry import DefaultScope, init_default_scope

from mmrefvlm.registry import HOOKS, MODELS, SCOPE


def test_scope_and_parent():
    from mmengine.registry import MODELS as ROOT

    assert MODELS.scope == SCOPE == 'mmrefvlm'
    assert MODELS.parent is ROOT
    assert MODELS.name == 'model'


def test_lazy_discovery_without_manual_imports():
    # A fresh interpreter: only the registry module is imported, then a string type is built.
    code = (
        'from mmengine.registry import init_default_scope\n'
        'init_default_scope("mmrefvlm")\n'
        'from mmrefvlm.registry import HOOKS, MODELS\n'
        'import sys\n'
        'assert "mmrefvlm.engine.hooks.safe_checkpoint_hook" not in sys.modules\n'
        'h = HOOKS.build(dict(type="SafeCheckpointHook"))\n'
        'print(type(h).__module__)\n'
        'print(MODELS.get("HFCausalLM").__name__)\n'
    )
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ['mmrefvlm.engine.hooks.safe_checkpoint_hook', 'build_causal_lm']


def test_mmdet_components_reachable_by_scope():
    init_default_scope('mmrefvlm')
    try:
        loss = MODELS.build(dict(type='mmdet.GIoULoss', loss_weight=2.0))
        assert type(loss).__module__.startswith('mmdet.')
        assert loss.loss_weight == 2.0
    finally:
        DefaultScope._instance_dict.pop('mmrefvlm', None)


def test_unknown_type_raises():
    import pytest

    with pytest.raises(KeyError):
        HOOKS.build(dict(type='NoSuchHook'))


def test_tests_cannot_reach_the_network():
    import socket

    import pytest

    with pytest.raises(RuntimeError, match='network'):
        socket.create_connection(('8.8.8.8', 53), timeout=1)
    import os

    assert os.environ['HF_HUB_OFFLINE'] == '1'
