# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""Fixtures of the core tests (environment, network guard and seeding: the repository conftest)."""

import pytest


@pytest.fixture(scope='session')
def demo_tokenizer():
    from mmrefvlm.tokenization import build_tokenizer

    return build_tokenizer('demo')
