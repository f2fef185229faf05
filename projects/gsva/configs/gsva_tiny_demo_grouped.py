# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
# A gsva_tiny_demo.py checkpoint in free generation on GSVA's multi-expression prompts: all
# expressions of a demo val image (its rec, res and gres ones) in one question, answered
# "Sure, e1:[SEG], e2:[REJ], ...", each slot scored against its expression (`gsva_grouped/*`).
#   python tools/test.py projects/gsva/configs/gsva_tiny_demo_grouped.py CHECKPOINT
from mmengine.config import read_base
from mmengine.dataset import ConcatDataset

with read_base():
    from .gsva_tiny_demo import *  # noqa: F401,F403

from projects.gsva.gsva_seg import GSVAGRESMetric

val_dataloader.dataset = dict(type=ConcatDataset, datasets=[grouped_val_dataset])
test_dataloader = val_dataloader
val_evaluator = [dict(type=GSVAGRESMetric, tasks='gsva_seg', prefix='gsva_grouped')]
test_evaluator = val_evaluator
