# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""Shared fixtures: a tiny generated demo dataset and a hard-timeout ``tools/train.py`` runner."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from mmrefvlm.testing import subprocess_pythonpath

REPO = Path(__file__).resolve().parents[2]
TRAIN = str(REPO / 'tools' / 'train.py')
CONFIGS = REPO / 'tests' / 'data' / 'configs'
DIST_CFG = str(CONFIGS / 'tiny_stage2_dist.py')
RESUME_CFG = str(CONFIGS / 'tiny_stage2_resume.py')
TEXT_TASKS = ('caption', 'vqa', 'reg')
UNIT_TASKS = ('rec', 'res', 'ig_keypoint')


@pytest.fixture(scope='session')
def demo_cwd(tmp_path_factory) -> Path:
    """A folder holding ``demo_data/`` (8 training images, the 6 tasks of the test configs);
    the test configs read ``demo_data`` relative to the working directory."""
    from mmrefvlm.datasets import generate_demo_dataset

    root = tmp_path_factory.mktemp('reliability')
    generate_demo_dataset(
        str(root / 'demo_data'), num_train_images=8, num_val_images=1, tasks=TEXT_TASKS + UNIT_TASKS
    )
    return root


@dataclass
class Result:
    returncode: int
    log: str


def run_tool(
    args: list[str], cwd: Path, log_file: Path, timeout: float, *, cuda: bool = False
) -> Result:
    """Run ``python ARGS`` in its own process group, one thread per process; on timeout kill the
    whole group (torchrun's workers included) and fail.

    The child keeps the caller's environment (``PYTHONPATH`` gets the repository prepended). With
    ``cuda=False`` (the default) it sees no GPU, so the CPU semantics these tests pin down (gloo
    DDP, bitwise-exact resume) are checked on GPU machines too; the ``gpu``-marked tests pass
    ``cuda=True``.
    """
    env = dict(
        os.environ,
        OMP_NUM_THREADS='1',
        MKL_NUM_THREADS='1',
        PYTHONPATH=subprocess_pythonpath(),
        HF_HUB_OFFLINE='1',
        TRANSFORMERS_OFFLINE='1',
        TOKENIZERS_PARALLELISM='false',
    )
    if not cuda:
        env['CUDA_VISIBLE_DEVICES'] = ''
    with open(log_file, 'w') as log:
        proc = subprocess.Popen(
            [sys.executable, *args],
            cwd=cwd,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            pytest.fail(
                f'{args} did not finish in {timeout} s (hang?); log tail:\n'
                f'{log_file.read_text()[-4000:]}'
            )
    return Result(proc.returncode, log_file.read_text())


def scalars(work_dir: Path) -> dict[int, dict]:
    """The per-iteration training scalars of every run in a work dir (``vis_data/scalars.json``),
    keyed by iteration; a later run (by timestamp folder) overrides an earlier one."""
    out: dict[int, dict] = {}
    for path in sorted(work_dir.glob('*/vis_data/scalars.json')):
        for line in path.read_text().splitlines():
            row = json.loads(line)
            if 'iter' in row and 'loss' in row:
                out[row['iter']] = row
    return out


def tail(text: str, n: int = 4000) -> str:
    return text[-n:]
