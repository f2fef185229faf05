# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""Models: the LLM factory, vision encoders, prompt encoders, router, unit decoders, RefVLM."""
from .llms import build_causal_lm

__all__ = ['build_causal_lm']
