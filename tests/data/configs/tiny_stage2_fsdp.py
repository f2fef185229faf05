# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
# tiny_stage2_dist.py (2 ranks with different task mixes) under FSDP instead of DDP, with the
# strategy of configs/_base_/strategies/fsdp.py. float32 throughout so that its losses can be
# compared with the DDP run's; the strategy turns on the global-norm clipping of sharded
# gradients by itself (not set here, so the DDP comparison of grad_norm checks that it does).
from mmengine.config import read_base

with read_base():
    from ....configs._base_.strategies.fsdp import *  # noqa: F401,F403
    from .tiny_stage2_dist import *  # noqa: F401,F403

from mmrefvlm.engine import SafeCheckpointHook

strategy.model_wrapper.mixed_precision = None
# DumpStateDictHook reads the unwrapped module, whose parameters FSDP has sharded
custom_hooks = [dict(type=SafeCheckpointHook)]
