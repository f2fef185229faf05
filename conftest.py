# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""Settings for every test under tests/ and projects/: offline, one thread, no network, seeded."""

import json
import os
import socket

os.environ.setdefault('HF_HUB_OFFLINE', '1')
os.environ.setdefault('TRANSFORMERS_OFFLINE', '1')
os.environ.setdefault('OMP_NUM_THREADS', '1')
os.environ.setdefault('TOKENIZERS_PARALLELISM', 'false')
os.environ.setdefault(
    'MMREFVLM_CACHE', os.path.join(os.path.dirname(os.path.abspath(__file__)), '.cache', 'mmrefvlm')
)

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)

_real_connect = socket.socket.connect
_LOCAL = ('127.', 'localhost', '::1', '0.0.0.0')


class NetworkAccessError(RuntimeError):
    """A test tried to reach a non-loopback address."""


def _guarded_connect(self, address, *args, **kwargs):
    host = address[0] if isinstance(address, tuple) else str(address)
    if self.family in (socket.AF_INET, socket.AF_INET6) and not str(host).startswith(_LOCAL):
        raise NetworkAccessError(f'tests must not touch the network (connect to {address!r})')
    return _real_connect(self, address, *args, **kwargs)


socket.socket.connect = _guarded_connect


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield


def pytest_collection_modifyitems(config, items):
    """``@pytest.mark.gpu`` tests need CUDA: skipped, with the reason shown, where there is none."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason='needs a CUDA GPU (run `make gpu-check` on a GPU machine)')
    for item in items:
        if 'gpu' in item.keywords:
            item.add_marker(skip)


def pytest_runtest_logreport(report):
    """With ``MMREFVLM_FAILURE_LOG`` set (``make gpu-check``), append each failure as it happens,
    so a run cut short by a time limit still says what failed and why (controller process only
    under xdist, which forwards the workers' reports)."""
    path = os.environ.get('MMREFVLM_FAILURE_LOG')
    if path and report.failed and not os.environ.get('PYTEST_XDIST_WORKER'):
        with open(path, 'a', encoding='utf-8') as f:
            f.write(f'=== {report.nodeid} ({report.when})\n{report.longreprtext[-4000:]}\n')


@pytest.fixture
def gpu_report():
    """``record(name, **values)``: appends one JSON line to ``$MMREFVLM_GPU_REPORT`` (when set),
    which ``tools/misc/gpu_check_summary.py`` turns into the summary of ``make gpu-check``."""
    path = os.environ.get('MMREFVLM_GPU_REPORT')

    def record(name: str, **values) -> None:
        if path:
            with open(path, 'a', encoding='utf-8') as f:
                f.write(json.dumps(dict(name=name, **values)) + '\n')

    return record


@pytest.fixture
def no_tf32():
    """Full fp32 matmuls and convolutions on CUDA (TF32 would differ from the CPU by ~1e-3)."""
    old = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old
