# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
# The embedded demo on one GPU: the CPU demo's model and task mix (demo_stage2.py), trained on a
# much larger generated dataset with large batches and a longer schedule. The validation split is
# the CPU demo's (the generator is prefix-stable: val image i is the same for any dataset size),
# so the two runs' metrics compare directly.
#   python tools/run_demo.py --config configs/refvlm/demo_gpu.py      (generates data/demo_gpu)
from mmengine.config import read_base
from mmengine.optim import CosineAnnealingLR, LinearLR

with read_base():
    from .demo_stage2 import *  # noqa: F401,F403

from mmrefvlm.engine import TimeBudgetHook

# --- knobs ---
data_root = 'data/demo_gpu'
# read by tools/run_demo.py: the dataset it generates (16 processes draw the images)
demo_dataset = dict(num_train_images=12000, num_val_images=200, workers=16)
train_batch_size = 64
val_batch_size = 64
lr = 2e-3
max_iters = 3000
warmup_iters = 150
# training measures its step time after 40 iterations and compresses the schedule to fit this
time_budget_s = 480

for _loader in (train_dataloader, val_dataloader):
    for _ds in _loader.dataset.datasets:
        _ds.data_root = data_root
train_dataloader.update(
    batch_size=train_batch_size, num_workers=10, persistent_workers=True, pin_memory=True
)
val_dataloader.update(
    batch_size=val_batch_size, num_workers=4, persistent_workers=False, pin_memory=True
)
test_dataloader = val_dataloader

optim_wrapper.optimizer.lr = lr
param_scheduler = [
    dict(type=LinearLR, start_factor=0.01, by_epoch=False, begin=0, end=warmup_iters),
    dict(
        type=CosineAnnealingLR,
        by_epoch=False,
        eta_min=lr * 0.01,
        begin=warmup_iters,
        end=max_iters,
        T_max=max_iters - warmup_iters,
    ),
]
train_cfg = dict(type=FastResumeIterBasedTrainLoop, max_iters=max_iters, val_interval=max_iters)
default_hooks.checkpoint.interval = 1000
default_hooks.logger.interval = 50
custom_hooks = custom_hooks + [
    dict(type=TimeBudgetHook, max_seconds=time_budget_s, fit_schedule=True)
]
# DataLoader workers start with spawn: the main process runs CUDA and autograd threads
env_cfg.mp_cfg = dict(mp_start_method='spawn', opencv_num_threads=0)
# read by tools/run_demo.py for its report (percent)
demo_aims = {'rec/Acc@0.5': 75.0, 'res/cIoU': 60.0, 'gres/N-acc': 90.0, 'trp/parse_success': 99.0}
