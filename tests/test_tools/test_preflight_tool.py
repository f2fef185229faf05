# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""The headline command on a machine without the paper's weights and data (offline) ends with the
one preflight message, not a transformers traceback; tools/test.py checks its own sections."""

import os
import os.path as osp
import subprocess
import sys

import pytest

from mmrefvlm.testing.tool_helpers import REPO_ROOT, load_tool


def test_headline_train_command_prints_one_clear_message(tmp_path):
    env = dict(
        os.environ,
        HF_HUB_OFFLINE='1',
        TRANSFORMERS_OFFLINE='1',
        OMP_NUM_THREADS='1',
        PYTHONPATH=os.pathsep.join(p for p in (REPO_ROOT, os.environ.get('PYTHONPATH')) if p),
    )
    # `python tools/train.py configs/refvlm/stage2.py`, from a folder without checkpoints/, data/
    config = osp.join(REPO_ROOT, 'configs', 'refvlm', 'stage2.py')
    res = subprocess.run(
        [sys.executable, osp.join(REPO_ROOT, 'tools', 'train.py'), config],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert res.returncode == 1
    out = res.stdout + res.stderr
    assert 'Traceback' not in out, out[-3000:]
    assert out.count('preflight:') == 1 and 'nothing was built' in out
    for item, how in (
        ("'checkpoints/vicuna-7b-v1.5'", 'prepare_weights.py --only vicuna-7b-v1.5'),
        ("'checkpoints/clip-vit-large-patch14-336'", '--only clip-vit-large-patch14-336'),
        ("'checkpoints/clip-convnext-large-512-hf'", '--only clip-convnext-large'),
        ("'data/vt_instruct'", 'build_vt_instruct.py'),
    ):
        assert item in out and how in out, (item, out)
    assert 'preflight: 4 asset(s)' in out


def test_test_tool_checks_the_test_data_only(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    ckpt = tmp_path / 'iter_1.pth'
    ckpt.write_bytes(b'')  # never read: preflight stops first
    config = osp.join(REPO_ROOT, 'configs', 'refvlm', 'demo_stage2.py')
    with pytest.raises(SystemExit) as err:
        load_tool('test').main([config, str(ckpt), '--work-dir', str(tmp_path / 'w')])
    message = str(err.value)
    assert message.startswith('preflight: 1 asset(s)') and "'data/demo'" in message
    assert 'make_demo_data.py' in message and 'test_dataloader' in message


def test_skip_preflight_goes_on_to_the_build(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no data/demo here
    config = osp.join(REPO_ROOT, 'configs', 'refvlm', 'demo_stage2.py')
    argv = [config, '--work-dir', str(tmp_path / 'w'), '--cfg-options', 'train_cfg.max_iters=1']
    with pytest.raises(SystemExit, match='preflight'):
        load_tool('train').main(argv)
    with pytest.raises(Exception) as err:  # the dataset itself fails, later
        load_tool('train').main([*argv[:3], '--skip-preflight', *argv[3:]])
    assert 'preflight' not in str(err.value) and 'annotations' in str(err.value)
