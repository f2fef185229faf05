# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
# SAM4MLLM-PPG on the embedded demo, on CPU: the demo's tiny LLM + CLIP-ViT (no ConvNeXt pyramid:
# SAM4MLLM has no decoder head) trained with the text CE alone on the demo's rec / res / gres
# records rewritten as SAM prompts ("[01,22,33,47] (15,30,1) (20,31,1) (02,40,0)", coordinates in
# 100 bins of the image side; "No object found." for an empty target), with the comparison's
# budget (docs/seed_methods.md: `max_iters` x `train_batch_size` samples, rec : res : gres =
# 4 : 4 : 3). At test time the frozen tiny SAM fine-tuned by sam4mllm_tiny_sam_demo.py turns the
# parsed prompts into masks. Steps:
#   python tools/train.py projects/sam4mllm/configs/sam4mllm_tiny_sam_demo.py      # SAM, once
#   python projects/sam4mllm/tools/make_ppg_labels.py                              # PPG labels
#   python tools/run_demo.py --config projects/sam4mllm/configs/sam4mllm_ppg_tiny_demo.py
from mmengine.config import read_base
from mmengine.dataset import ConcatDataset, DefaultSampler

with read_base():
    from ....configs.refvlm.demo_stage2 import *  # noqa: F401,F403
    from .sam4mllm_tiny_sam_demo import sam_image_size, tiny_sam

from mmrefvlm.datasets import (
    BuildUnitTargets,
    FormatConversation,
    LoadRecordImage,
    PackRefVLMInputs,
    PrepareImages,
    RefVLMDataset,
    WeightedMultiDatasetSampler,
    refvlm_collate,
)
from mmrefvlm.datasets.transforms import MaskTarget
from mmrefvlm.evaluation import GRESMetric, RESMetric
from projects.sam4mllm.sam4mllm_seg import (
    SAM4MLLM,
    PromptableSam,
    SAM4MLLMConversation,
    SamPromptAnswerFormat,
)
from projects.sam_plugin.sam_unit import PackSamImage

custom_imports = dict(imports=['projects.sam4mllm.sam4mllm_seg'], allow_failed_imports=False)

# --- knobs ---
variant = 'ppg'
num_bins = 100  # demo images are <= 64 px: 100 bins are finer than a pixel (Qwen-VL: 1000)
sam_checkpoint = 'work_dirs/sam4mllm_tiny_sam_demo/iter_500.pth'
ppg_labels = 'data/demo/sam4mllm_ppg_labels.json'  # None: points sampled without SAM
template = 'sam4mllm_ppg'
# LLaVA's system prompt, shared by every task (as projects/lisa and projects/gsva)
system_prompt = (
    'A chat between a curious user and an artificial intelligence assistant. The assistant '
    "gives helpful, detailed, and polite answers to the user's questions."
)
seg_tasks = dict(rec=4, res=4, gres=3)  # the demo's rec : res : gres sampling ratios
# the paper's round-1 count hint per dataset: RES expressions name one object, GRES ones any
# number, maybe none (the paper trains with '0+' everywhere; here the hint tells the model which
# expressions may have no target, as REF-VLM's per-task system prompts do)
counts = dict(rec='1', res='1', gres='0+')
val_seg_tasks = ['res', 'gres']
max_length = 368  # longest training sample 337 tokens (every 3rd sample measured)
max_iters = 1200  # the seed-method comparison budget (docs/seed_methods.md)
warmup_iters = 120
lr = 1e-3

# --- model: the demo MLLM, no decoder, a frozen SAM after it ---
model = dict(
    type=SAM4MLLM,
    tokenizer=tokenizer,
    llm=model.llm,
    vision_encoder=model.vision_encoder,
    pyramid_encoder=None,
    sam=dict(
        type=PromptableSam,
        sam=tiny_sam,
        checkpoint=sam_checkpoint,
        checkpoint_format='hf',
        checkpoint_prefix='sam.sam.',
    ),
    variant=variant,
    num_bins=num_bins,
    chat_template=chat_template,
    loss_weights=dict(llm=1.0),
    max_new_tokens=170,
)

# --- data: rec / res / gres records as SAM-prompt answers ---
_load = [
    dict(type=LoadRecordImage),
    dict(type=PrepareImages, sizes=dict(vit=vit_image_size, sam=sam_image_size)),
]
_rewrite = dict(
    type=SAM4MLLMConversation,
    variant=variant,
    num_bins=num_bins,
    template=template,
    system=system_prompt,
    labels=ppg_labels,
)
_format = dict(
    type=FormatConversation,
    tokenizer=tokenizer,
    chat_template=chat_template,
    num_image_tokens=num_image_tokens,
    num_prompt_tokens=num_prompt_tokens,
    cot=False,
    max_length=max_length,
    extra_template_dirs=['projects.sam4mllm.sam4mllm_seg:templates'],
    answer_format=dict(type=SamPromptAnswerFormat),
)
_targets = dict(mask=dict(type=MaskTarget, size=mask_size))
s4m_train_pipeline = _load + [
    _rewrite,
    _format,
    dict(type=PackRefVLMInputs),
]
s4m_test_pipeline = _load + [
    dict(_rewrite, predict=True, labels=None),
    dict(_format, predict=True),
    dict(type=BuildUnitTargets, unit_targets=_targets),
    dict(type=PackRefVLMInputs),
    dict(type=PackSamImage, key='sam'),
]
train_dataloader.sampler = dict(type=WeightedMultiDatasetSampler, ratios=list(seg_tasks.values()))
train_dataloader.dataset = dict(
    type=ConcatDataset,
    datasets=[
        dict(
            type=RefVLMDataset,
            data_root=data_root,
            ann_file=f'annotations/train_{task}.jsonl',
            pipeline=[*_load, dict(_rewrite, count=counts[task]), *s4m_train_pipeline[3:]],
        )
        for task in seg_tasks
    ],
)
val_dataloader = dict(
    batch_size=val_batch_size,
    num_workers=0,
    persistent_workers=False,
    sampler=dict(type=DefaultSampler, shuffle=False),
    collate_fn=dict(type=refvlm_collate),
    dataset=dict(
        type=ConcatDataset,
        datasets=[
            dict(
                type=RefVLMDataset,
                data_root=data_root,
                ann_file=f'annotations/val_{task}.jsonl',
                pipeline=[
                    *_load,
                    dict(_rewrite, predict=True, labels=None, count=counts[task]),
                    *s4m_test_pipeline[3:],
                ],
                test_mode=True,
            )
            for task in val_seg_tasks
        ],
    ),
)
test_dataloader = val_dataloader
val_evaluator = [dict(type=RESMetric), dict(type=GRESMetric)]
test_evaluator = val_evaluator
demo_aims = {}

# --- schedule: the demo's, over max_iters ---
optim_wrapper.optimizer.lr = lr
param_scheduler[0].end = warmup_iters
param_scheduler[1].update(
    begin=warmup_iters, end=max_iters, T_max=max_iters - warmup_iters, eta_min=lr * 0.01
)
train_cfg = dict(type=FastResumeIterBasedTrainLoop, max_iters=max_iters, val_interval=max_iters)
default_hooks.checkpoint.interval = max_iters
