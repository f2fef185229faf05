# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""Fixtures of the GPU tests (``@pytest.mark.gpu``; skipped without CUDA by the repository
conftest, which also holds ``gpu_report`` and ``no_tf32``): the reliability tests' demo data."""

from __future__ import annotations

from tests.test_reliability.conftest import demo_cwd  # noqa: F401  (fixture)
