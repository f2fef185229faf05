# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
# GSVA's teacher-forced evaluation (its public code, `solver.py::eval_gres` with reeval=True) of
# a checkpoint trained with gsva_tiny_demo.py: the ground-truth answer is fed, each slot's
# [SEG] / [REJ] decision is the model's argmax at that slot, and every slot is decoded. Both
# metric modes are reported: `gsva` ("paper": a rejected slot is an empty mask) and `gsva_code`
# (the code: a rejected non-empty slot still scores its decoded mask).
#   python tools/test.py projects/gsva/configs/gsva_tiny_demo_tf.py CHECKPOINT
from mmengine.config import read_base

with read_base():
    from .gsva_tiny_demo import *  # noqa: F401,F403

from mmrefvlm.evaluation import GRESMetric
from projects.gsva.gsva_seg import GSVAGRESMetric
from projects.lisa.lisa_seg import MMDetRefSegMetric

model.eval_mode = 'teacher_forced'
val_dataloader.dataset.datasets.append(grouped_val_dataset)
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
    dict(type=GSVAGRESMetric, tasks='gsva_seg', prefix='gsva_grouped', mode='paper'),
    dict(type=GSVAGRESMetric, tasks='gsva_seg', prefix='gsva_grouped_code', mode='code'),
]
test_evaluator = val_evaluator
