# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""mmrefvlm: multimodal LLMs that answer in text and visual units (boxes, masks, keypoints, depth).

Importing the package does exactly two things besides defining names, both needed before any other
OpenMMLab import and both idempotent:

1. :func:`mmrefvlm.utils.install_mmcv_ops_guard` makes ``mmcv-lite`` usable by mmdet (its compiled
   ops are replaced by a module whose functions raise a clear ``MMCVOpsUnavailableError``);
2. :func:`mmrefvlm.utils.register_checkpoint_loaders` makes MMEngine load local checkpoints
   weights-only (``torch.load(weights_only=True)``) or from safetensors.
"""

from .utils.checkpoint import register_checkpoint_loaders
from .utils.mmcv_guard import install_mmcv_ops_guard
from .version import __version__

install_mmcv_ops_guard()
register_checkpoint_loaders()

__all__ = ['__version__']
