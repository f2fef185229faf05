# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""Training-engine pieces: hooks, runner helpers, optimizer constructors."""
from .hooks import InitUnitDecoderHook, SafeCheckpointHook

__all__ = ['SafeCheckpointHook', 'InitUnitDecoderHook']
