# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""Training-engine pieces: hooks, the training loop, NaN-guarding optimizer wrappers,
the device-aware FSDP strategy."""

from .hooks import InitUnitDecoderHook, SafeCheckpointHook, TimeBudgetHook
from .loops import FastResumeIterBasedTrainLoop
from .optim_wrappers import NaNGuardAmpOptimWrapper, NaNGuardOptimWrapper, NonFiniteLossError
from .strategies import DeviceAwareFSDPStrategy

__all__ = [
    'SafeCheckpointHook',
    'InitUnitDecoderHook',
    'TimeBudgetHook',
    'FastResumeIterBasedTrainLoop',
    'NaNGuardOptimWrapper',
    'NaNGuardAmpOptimWrapper',
    'NonFiniteLossError',
    'DeviceAwareFSDPStrategy',
]
