# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
# A config with a typo in a registered type name (for the "close registered names" error test).
from mmengine.config import read_base

with read_base():
    from .tiny_stage2_dist import *  # noqa: F401,F403

model.unit_decoders.box.type = 'BoxUnitDecodr'  # typo of BoxUnitDecoder
