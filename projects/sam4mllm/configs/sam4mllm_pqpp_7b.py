# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
# SAM4MLLM-7B-PQPP: as sam4mllm_7b.py (Qwen-VL-7B-Chat shapes, LoRA r=256 + the resampler, a
# frozen SAM ViT-H in place of EfficientViT-SAM-XL1), but round 1 answers boxes only and round 2
# asks whether points inside a box lie on the object (4 point turns per sample in training; a
# 5 x 5 grid per box at test time, points kept above probability 0.9; SAM4MLLM Sec. 3.2).
#   torchrun --nproc_per_node 8 tools/train.py projects/sam4mllm/configs/sam4mllm_pqpp_7b.py \
#       --launcher pytorch
#   python tools/analysis/count_params.py projects/sam4mllm/configs/sam4mllm_pqpp_7b.py --meta
from mmengine.config import read_base

with read_base():
    from .sam4mllm_7b import *  # noqa: F401,F403

variant = 'pqpp'
template = 'sam4mllm_box'
model.update(variant=variant, grid_size=5, point_threshold=0.9)
for _dataset in train_dataloader.dataset.datasets + val_dataloader.dataset.datasets:
    _dataset.pipeline[2].update(variant=variant, template=template, labels=None, num_point_turns=4)
test_dataloader = val_dataloader
