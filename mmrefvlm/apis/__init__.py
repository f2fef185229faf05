# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""High-level entry points: config loading and runners for the tools, and inference."""

from .inference_inputs import InferenceInputError
from .inferencer import RefVLMInferencer
from .runner import build_runner, load_config

__all__ = ['build_runner', 'load_config', 'RefVLMInferencer', 'InferenceInputError']
