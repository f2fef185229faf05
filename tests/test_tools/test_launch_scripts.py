# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""tools/dist_train.sh, dist_test.sh and slurm_train.sh pass the right launcher arguments (run with
stand-in `python` and `srun` that print their command line)."""

import os
import os.path as osp
import subprocess

import pytest

from mmrefvlm.testing.tool_helpers import REPO_ROOT

TOOLS = osp.join(REPO_ROOT, 'tools')


@pytest.fixture
def fake_bin(tmp_path):
    for name in ('python', 'srun'):
        path = tmp_path / name
        path.write_text(
            '#!/usr/bin/env bash\necho "' + name + ' $*"\necho "PYTHONPATH=$PYTHONPATH"\n'
        )
        path.chmod(0o755)
    return tmp_path


def run(script, args, fake_bin, **env):
    full = dict(
        os.environ, PATH=f'{fake_bin}{os.pathsep}{os.environ["PATH"]}', PYTHONPATH='', **env
    )
    full.pop('PYTHON', None)
    res = subprocess.run(
        ['bash', osp.join(TOOLS, script), *args],
        env=full,
        capture_output=True,
        text=True,
        timeout=30,
    )
    return res.returncode, res.stdout + res.stderr


def test_dist_train_single_and_multi_node(fake_bin):
    rc, out = run('dist_train.sh', ['cfg.py', '8', '--amp'], fake_bin)
    assert rc == 0, out
    assert (
        'python -m torch.distributed.run --nnodes=1 --node_rank=0 --master_addr=127.0.0.1 '
        f'--master_port=29500 --nproc_per_node=8 {TOOLS}/train.py cfg.py --launcher pytorch --amp'
    ) in out
    assert f'PYTHONPATH={TOOLS}/..' in out
    rc, out = run(
        'dist_train.sh',
        ['cfg.py', '8'],
        fake_bin,
        NNODES='2',
        NODE_RANK='1',
        MASTER_ADDR='10.0.0.1',
        PORT='29600',
    )
    assert '--nnodes=2 --node_rank=1 --master_addr=10.0.0.1 --master_port=29600' in out
    rc, out = run('dist_train.sh', ['cfg.py'], fake_bin)
    assert rc == 2 and 'usage' in out


def test_dist_test_and_slurm_train(fake_bin):
    rc, out = run('dist_test.sh', ['cfg.py', 'ckpt.pth', '2', '--show-dir', 'vis'], fake_bin)
    assert rc == 0 and f'{TOOLS}/test.py cfg.py ckpt.pth --launcher pytorch --show-dir vis' in out
    rc, out = run(
        'slurm_train.sh',
        ['gpu', 'job', 'cfg.py', 'work', '--amp'],
        fake_bin,
        GPUS='16',
        SRUN_ARGS='--quotatype=auto',
    )
    assert rc == 0, out
    assert (
        'srun -p gpu --job-name=job --gres=gpu:8 --ntasks=16 --ntasks-per-node=8 '
        '--cpus-per-task=5 --kill-on-bad-exit=1 --quotatype=auto python -u '
        f'{TOOLS}/train.py cfg.py --work-dir=work --launcher=slurm --amp'
    ) in out
