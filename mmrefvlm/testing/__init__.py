# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""Test helpers shipped with the package: synthetic inputs and reusable contract test suites."""

from .decoder_contract import UnitDecoderContract
from .sync_counter import SyncCounter, SyncEvent
from .tool_helpers import subprocess_pythonpath
from .unit_inputs import (
    CORE_SYNTHETIC_TARGETS,
    DEMO_CLIP_CHANNELS,
    DEMO_IN_CHANNELS,
    DEMO_PYRAMID_CHANNELS,
    SyntheticFrame,
    SyntheticTargets,
    demo_unit_inputs,
    pad_unit_inputs,
    swap_targets,
    tiny_decoder_cfg,
)

__all__ = [
    'UnitDecoderContract',
    'subprocess_pythonpath',
    'SyncCounter',
    'SyncEvent',
    'demo_unit_inputs',
    'SyntheticFrame',
    'SyntheticTargets',
    'CORE_SYNTHETIC_TARGETS',
    'pad_unit_inputs',
    'swap_targets',
    'tiny_decoder_cfg',
    'DEMO_IN_CHANNELS',
    'DEMO_PYRAMID_CHANNELS',
    'DEMO_CLIP_CHANNELS',
]
