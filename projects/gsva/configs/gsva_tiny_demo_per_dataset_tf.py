# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
# GSVA's teacher-forced evaluation (gsva_tiny_demo_tf.py) of a gsva_tiny_demo_per_dataset.py
# checkpoint on the comparison's val split (one expression per prompt, each task with the system
# prompt it was trained with); both metric modes: `gsva` (paper) and `gsva_code` (the code's).
#   python tools/test.py projects/gsva/configs/gsva_tiny_demo_per_dataset_tf.py CHECKPOINT
from mmengine.config import read_base

with read_base():
    from .gsva_tiny_demo_per_dataset import *  # noqa: F401,F403

from mmrefvlm.evaluation import GRESMetric
from projects.gsva.gsva_seg import GSVAGRESMetric
from projects.lisa.lisa_seg import MMDetRefSegMetric

model.eval_mode = 'teacher_forced'
# the test pipeline keeps the ground-truth answer (and its labels) in the input: the
# FormatConversation step is the one with a `predict` key
for _ds in val_dataloader.dataset.datasets:
    _ds.pipeline = [dict(t, predict=False) if 'predict' in t else t for t in _ds.pipeline]
test_dataloader = val_dataloader
val_evaluator = [
    dict(type=MMDetRefSegMetric),
    dict(type=GRESMetric),
    dict(type=GSVAGRESMetric, mode='paper'),
    dict(type=GSVAGRESMetric, prefix='gsva_code', mode='code'),
]
test_evaluator = val_evaluator
