# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
from .init_decoder_hook import InitUnitDecoderHook
from .safe_checkpoint_hook import SafeCheckpointHook
from .time_budget_hook import TimeBudgetHook

__all__ = ['SafeCheckpointHook', 'InitUnitDecoderHook', 'TimeBudgetHook']
