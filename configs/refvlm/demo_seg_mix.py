# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
# The REF-VLM row of the seed-method comparison (docs/seed_methods.md): the demo model (TRP
# answers, <REF> states at the <REF> position, box + MaskFormer mask decoders, LLM CE x 5)
# trained only on the demo's rec / res / gres records with the comparison's budget
# (`max_iters` x `train_batch_size`, the same as projects/lisa and projects/gsva), evaluated on
# the same res / gres val split. The keypoint and depth decoders are left out: no record of this
# mix uses them.
#   python tools/run_demo.py --config configs/refvlm/demo_seg_mix.py
from mmengine.config import read_base
from mmengine.dataset import ConcatDataset

with read_base():
    from .demo_stage2 import *  # noqa: F401,F403

from mmrefvlm.datasets import RefVLMDataset, WeightedMultiDatasetSampler
from mmrefvlm.evaluation import GRESMetric, RESMetric

seg_tasks = dict(rec=4, res=4, gres=3)  # the demo's rec : res : gres ratios
val_seg_tasks = ['res', 'gres']
max_iters = 1200  # the seed-method comparison budget (docs/seed_methods.md)
warmup_iters = 120

model.unit_decoders = dict(box=model.unit_decoders.box, mask=model.unit_decoders.mask)
model.loss_weights = dict(llm=5.0, box=1.0, mask=1.0)
train_dataloader.sampler = dict(type=WeightedMultiDatasetSampler, ratios=list(seg_tasks.values()))
train_dataloader.dataset = dict(
    type=ConcatDataset,
    datasets=[
        dict(
            type=RefVLMDataset,
            data_root=data_root,
            ann_file=f'annotations/train_{task}.jsonl',
            pipeline=train_pipeline,
        )
        for task in seg_tasks
    ],
)
val_dataloader.dataset = dict(
    type=ConcatDataset,
    datasets=[
        dict(
            type=RefVLMDataset,
            data_root=data_root,
            ann_file=f'annotations/val_{task}.jsonl',
            pipeline=test_pipeline,
            test_mode=True,
        )
        for task in val_seg_tasks
    ],
)
test_dataloader = val_dataloader
val_evaluator = [dict(type=RESMetric), dict(type=GRESMetric)]
test_evaluator = val_evaluator
demo_aims = {}

param_scheduler[0].end = warmup_iters
param_scheduler[1].update(begin=warmup_iters, end=max_iters, T_max=max_iters - warmup_iters)
train_cfg = dict(type=FastResumeIterBasedTrainLoop, max_iters=max_iters, val_interval=max_iters)
default_hooks.checkpoint.interval = max_iters
