# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
# REF-VLM stage 1 (App. D, Table 14): only the projector trains (CLIP-ViT and the LLM frozen), on
# image-level understanding data; AdamW lr 1e-5, warm-up 3 %, cosine, bf16, batch 16 per GPU.
# No visual-unit decoders yet (the paper's stage 1 writes boxes as text, Shikra-style; here the
# stage-1 mix is caption / VQA / region description, whose answers are plain text).
from mmengine.config import read_base
from mmengine.dataset import ConcatDataset
from mmengine.optim import CosineAnnealingLR, LinearLR

with read_base():
    from .._base_.datasets.vt_instruct import *  # noqa: F401,F403
    from .._base_.default_runtime import *  # noqa: F401,F403
    from .._base_.models.refvlm_7b import *  # noqa: F401,F403
    from .._base_.schedules.iter_adamw import *  # noqa: F401,F403

from mmrefvlm.datasets import RefVLMDataset, WeightedMultiDatasetSampler
from mmrefvlm.engine import FastResumeIterBasedTrainLoop, NaNGuardAmpOptimWrapper
from mmrefvlm.evaluation import CaptionMetric

# --- knobs ---
lr = 1e-5
max_iters = 33000  # ~4.24 M samples at 8 GPUs x 16
warmup_iters = int(0.03 * max_iters)
stage1_files = {
    'coco/coco_caption_train.jsonl': 1.0,
    'llava/llava_v1_5_mix665k_vqa.jsonl': 1.0,
    'coco_interactive/cocoint_train_reg.jsonl': 0.5,
}

model.llm.torch_dtype = 'bfloat16'  # frozen: no updates to lose, half the memory
model.unit_decoders = dict()
model.loss_weights = dict(llm=1.0)
model.freeze_llm = True
model.gradient_checkpointing = False
train_dataloader.sampler = dict(
    type=WeightedMultiDatasetSampler, ratios=list(stage1_files.values())
)
train_dataloader.dataset = dict(
    type=ConcatDataset,
    datasets=[
        dict(
            type=RefVLMDataset,
            data_root=data_root,
            ann_file=f,
            pipeline=train_pipeline,
            skip_bad_samples=True,
        )
        for f in stage1_files
    ],
)
val_dataloader.dataset = dict(
    type=ConcatDataset,
    datasets=[
        dict(
            type=RefVLMDataset,
            data_root=data_root,
            ann_file='coco/coco_caption_val.jsonl',
            pipeline=test_pipeline,
            test_mode=True,
        )
    ],
)
test_dataloader = val_dataloader

optim_wrapper.optimizer.lr = lr
optim_wrapper.type = NaNGuardAmpOptimWrapper
optim_wrapper.dtype = 'bfloat16'
param_scheduler = [
    dict(type=LinearLR, start_factor=1e-5, by_epoch=False, begin=0, end=warmup_iters),
    dict(
        type=CosineAnnealingLR,
        by_epoch=False,
        eta_min=0.0,
        begin=warmup_iters,
        end=max_iters,
        T_max=max_iters - warmup_iters,
    ),
]
train_cfg = dict(type=FastResumeIterBasedTrainLoop, max_iters=max_iters, val_interval=5000)
model_wrapper_cfg = dict(type='MMDistributedDataParallel', find_unused_parameters=False)
val_evaluator = [dict(type=CaptionMetric)]
test_evaluator = val_evaluator
