# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
# SAM4MLLM-PQPP on the embedded demo: as sam4mllm_ppg_tiny_demo.py, but round 1 answers boxes only
# and, in training, 4 round-2 turns ask about one random point inside a target's box each
# ("Is the point (12,34) on the object in [01,22,33,47]?" -> "Yes." / "No."). At test time the
# model asks a 5 x 5 grid inside every predicted box in one batched forward pass and gives SAM the
# points answered with probability > 0.9.
#   python tools/run_demo.py --config projects/sam4mllm/configs/sam4mllm_pqpp_tiny_demo.py
from mmengine.config import read_base

with read_base():
    from .sam4mllm_ppg_tiny_demo import *  # noqa: F401,F403

variant = 'pqpp'
template = 'sam4mllm_box'
max_length = 448
model.update(variant=variant, max_new_tokens=64, grid_size=5, point_threshold=0.9)
for _dataset in train_dataloader.dataset.datasets + val_dataloader.dataset.datasets:
    _dataset.pipeline[2].update(variant=variant, template=template, labels=None, num_point_turns=4)
    _dataset.pipeline[3].update(max_length=max_length)
test_dataloader = val_dataloader
