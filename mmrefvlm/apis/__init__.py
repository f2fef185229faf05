# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""High-level entry points used by the tools."""

from .runner import build_runner, load_config

__all__ = ['build_runner', 'load_config']
