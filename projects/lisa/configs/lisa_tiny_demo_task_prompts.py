# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
# LISA's tiny demo with each task's own system prompt: gres samples carry the gres task's prompt
# (as REF-VLM's gres samples and GSVA's per-dataset config do), rec / res LISA's short one. Same
# model, losses, budget and val split as lisa_tiny_demo.py. The question it answers: does LISA
# learn to give "nothing" (a mask under 50 px) when the task is visible in the prompt?
#   python tools/run_demo.py --config projects/lisa/configs/lisa_tiny_demo_task_prompts.py
from mmengine.config import read_base

with read_base():
    from .lisa_tiny_demo import *  # noqa: F401,F403

from mmrefvlm.datasets import LoadRecordImage, PrepareImages
from projects.lisa.lisa_seg import UnionExpressionTargets

task_system = dict(rec=system_prompt, res=system_prompt, gres=None)  # None: the task's own prompt
_load_by_task = {
    task: [
        dict(type=LoadRecordImage),
        dict(type=UnionExpressionTargets, empty='target', template='lisa_seg', system=system),
        dict(type=PrepareImages, sizes=dict(vit=vit_image_size, sam=sam_image_size)),
    ]
    for task, system in task_system.items()
}
for _ds in train_dataloader.dataset.datasets:
    _task = _ds.ann_file.split('train_')[-1].split('.')[0]
    _ds.pipeline = _load_by_task[_task] + lisa_train_pipeline[len(_load) :]
for _ds in val_dataloader.dataset.datasets:
    _task = _ds.ann_file.split('val_')[-1].split('.')[0]
    _ds.pipeline = _load_by_task[_task] + lisa_test_pipeline[len(_load) :]
test_dataloader = val_dataloader
del _ds, _task
