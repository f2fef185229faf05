# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
from .safe_checkpoint_hook import SafeCheckpointHook

__all__ = ['SafeCheckpointHook']
