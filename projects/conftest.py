# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""Test settings for the plugin projects' own tests: offline, one thread, seeded (as tests/)."""
import os

os.environ.setdefault('HF_HUB_OFFLINE', '1')
os.environ.setdefault('TRANSFORMERS_OFFLINE', '1')
os.environ.setdefault('OMP_NUM_THREADS', '1')
os.environ.setdefault('TOKENIZERS_PARALLELISM', 'false')
os.environ.setdefault('MMREFVLM_CACHE', os.path.join(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))), '.cache', 'mmrefvlm'))

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield
