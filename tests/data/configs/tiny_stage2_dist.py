# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
# A very small stage-2 run for the reliability tests (tests/test_reliability/): the demo config
# with an even smaller LLM, box + mask + keypoint decoders, 6 demo tasks and no validation.
#
# The demo data is read from `demo_data/` relative to the *working directory*: the tests generate
# it in a temporary folder with `generate_demo_dataset` and start tools/train.py there.
# Two samplers are used:
#   * RankSwapTaskSampler (default): under DDP, rank 0 gets text-only batches (caption/vqa/reg) and
#     rank 1 box/mask/keypoint batches (rec/res/ig_keypoint); they swap every `swap_every` iters.
# tiny_stage2_resume.py uses the sampler of the real configs (WeightedMultiDatasetSampler) instead.
from mmengine.config import read_base
from mmengine.dataset import ConcatDataset
from mmengine.optim import ConstantLR

with read_base():
    from ....configs.refvlm.demo_stage2 import *  # noqa: F401,F403

from mmrefvlm.datasets import RefVLMDataset
from mmrefvlm.models import BoxUnitDecoder, MaskUnitDecoder
from mmrefvlm.models.unit_decoders import KeypointUnitDecoder
from mmrefvlm.testing.dist_utils import DumpStateDictHook, RankSwapTaskSampler

# --- knobs ---
data_root = 'demo_data'
text_tasks = ['caption', 'vqa', 'reg']
unit_tasks = ['rec', 'res', 'ig_keypoint']
batch_size = 2
max_iters = 20
swap_every = 10
tiny_dim = 32

# --- model: smaller LLM and decoders; box, mask and keypoint units ---
model.llm.config.update(hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                        num_attention_heads=2, num_key_value_heads=2)
model.vision_encoder.config.update(num_hidden_layers=2)
# Frozen, as in the real stage-2 configs. A *trainable* ConvNeXtPyramid has parameters without
# gradients (its pooled LayerNorm, and the last stage when the decoders use levels 0-2), which DDP
# with find_unused_parameters=False rejects; see docs/reliability.md.
model.pyramid_encoder.frozen = True
_dec = dict(num_queries=4, d_model=tiny_dim, num_layers=1, num_heads=2, ffn_dim=2 * tiny_dim,
            dropout=0.0)
model.unit_decoders = dict(
    box=dict(type=BoxUnitDecoder, memory_size=8, box_head='pointer', **_dec),
    mask=dict(type=MaskUnitDecoder, fpn_dim=tiny_dim, mask_dim=tiny_dim, **_dec),
    keypoint=dict(type=KeypointUnitDecoder, num_keypoints=num_keypoints, sigmas=0.05,
                  num_point_layers=1, memory_size=8, **_dec))
model.loss_weights = dict(llm=1.0, box=0.5, mask=0.5, keypoint=0.5)
model.max_new_tokens = 8

# --- data: text-only tasks first, then unit tasks (RankSwapTaskSampler groups) ---
train_dataloader = dict(
    batch_size=batch_size, num_workers=0, persistent_workers=False,
    sampler=dict(type=RankSwapTaskSampler, batch_size=batch_size, swap_every=swap_every,
                 groups=[list(range(len(text_tasks))),
                         list(range(len(text_tasks), len(text_tasks) + len(unit_tasks)))]),
    collate_fn=train_dataloader.collate_fn,
    dataset=dict(type=ConcatDataset, datasets=[
        dict(type=RefVLMDataset, data_root=data_root, ann_file=f'annotations/train_{task}.jsonl',
             pipeline=train_pipeline) for task in text_tasks + unit_tasks]))
val_dataloader = val_cfg = val_evaluator = None
test_dataloader = test_cfg = test_evaluator = None

# --- schedule and runtime: constant lr, every iteration logged unsmoothed, one checkpoint ---
optim_wrapper.optimizer.lr = 1e-3
param_scheduler = [dict(type=ConstantLR, factor=1.0, by_epoch=False, begin=0, end=max_iters)]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=max_iters + 1)
default_hooks.logger.interval = 1
default_hooks.checkpoint.update(interval=max_iters, max_keep_ckpts=-1)
log_processor = dict(by_epoch=False, window_size=1)
custom_hooks = custom_hooks + [dict(type=DumpStateDictHook)]  # <work_dir>/rank_states/rank<r>.pth
env_cfg.dist_cfg = dict(backend='gloo')
model_wrapper_cfg = dict(type='MMDistributedDataParallel', find_unused_parameters=False)
randomness = dict(seed=0, deterministic=False)
