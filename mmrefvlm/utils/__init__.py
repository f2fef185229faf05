# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""Package-wide utilities (no model code)."""

from .checkpoint import (
    CheckpointFormatError,
    UnsafeCheckpointError,
    decode_safe,
    encode_safe,
    load_state_file,
    register_checkpoint_loaders,
)
from .mmcv_guard import MMCVOpsUnavailableError, install_mmcv_ops_guard, mmcv_ops_guard_installed

__all__ = [
    'install_mmcv_ops_guard',
    'mmcv_ops_guard_installed',
    'MMCVOpsUnavailableError',
    'register_checkpoint_loaders',
    'load_state_file',
    'UnsafeCheckpointError',
    'CheckpointFormatError',
    'encode_safe',
    'decode_safe',
]
