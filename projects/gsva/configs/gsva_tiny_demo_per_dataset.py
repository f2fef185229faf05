# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
# GSVA on the embedded demo with its public code's sampling: every training sample comes from ONE
# dataset (rec, res or gres here, RefCOCO / gRefCOCO there: `ReferSegDataset.__getitem__` draws a
# dataset, then an image, then up to `num_classes_per_sample` of that image's expressions in that
# dataset), at the demo's 4 : 4 : 3 ratios. gsva_tiny_demo.py instead groups an image's rec, res
# and gres expressions into one prompt under one system prompt. Here the gres samples carry the
# gres task's own system prompt ("... or answer with no mask when nothing matches", as REF-VLM's
# gres samples do), the rec / res samples the demo's short one, so the model can see when
# "nothing" is a possible answer. The demo has one expression per image and dataset, so the
# samples hold one expression each (a real gRefCOCO image has several: GroupedExpressionDataset
# groups them the same way). Same model, losses, budget and val split as gsva_tiny_demo.py:
#   python tools/run_demo.py --config projects/gsva/configs/gsva_tiny_demo_per_dataset.py
from mmengine.config import read_base
from mmengine.dataset import ConcatDataset

with read_base():
    from .gsva_tiny_demo import *  # noqa: F401,F403

from mmrefvlm.datasets import (
    BuildUnitTargets,
    FormatConversation,
    LoadRecordImage,
    PackRefVLMInputs,
    PrepareImages,
    RefVLMDataset,
    WeightedMultiDatasetSampler,
)
from mmrefvlm.datasets.transforms import MaskTarget
from projects.gsva.gsva_seg import GroupedExpressionDataset, SampleExpressions
from projects.lisa.lisa_seg import SlotAnswerFormat, UnionExpressionTargets
from projects.sam_plugin.sam_unit import PackSamImage

# rec / res: the demo's short system prompt; gres: None keeps the task's own (its template set)
task_system = dict(rec=system_prompt, res=system_prompt, gres=None)


_fmt = dict(
    type=FormatConversation,
    tokenizer=tokenizer,
    chat_template=chat_template,
    num_image_tokens=num_image_tokens,
    num_prompt_tokens=num_prompt_tokens,
    cot=False,
    max_length=max_length,
    extra_template_dirs=['projects.gsva.gsva_seg:templates'],
    answer_format=dict(type=SlotAnswerFormat, ref_token=seg_token, reject_token=rej_token),
    ref_parser=ref_parser,
)
_targets = dict(mask=dict(type=MaskTarget, size=mask_size, allow_empty=True))
_load = {
    task: [
        dict(type=LoadRecordImage),
        dict(
            type=UnionExpressionTargets,
            empty='reject',
            template='gsva_seg',
            system=task_system[task],
        ),
        dict(type=PrepareImages, sizes=dict(vit=vit_image_size, sam=sam_image_size)),
    ]
    for task in task_system
}
per_dataset_train_pipelines = {
    task: [
        dict(type=SampleExpressions),
        *_load[task],
        _fmt,
        dict(type=BuildUnitTargets, unit_targets=_targets, with_original=False),
        dict(type=PackRefVLMInputs),
        dict(type=PackSamImage, key='sam'),
    ]
    for task in task_system
}
per_dataset_test_pipelines = {
    task: [
        *_load[task],
        dict(_fmt, predict=True),
        dict(type=BuildUnitTargets, unit_targets=_targets),
        dict(type=PackRefVLMInputs),
        dict(type=PackSamImage, key='sam'),
    ]
    for task in task_system
}

train_dataloader.sampler = dict(type=WeightedMultiDatasetSampler, ratios=list(seg_tasks.values()))
train_dataloader.dataset = dict(
    type=ConcatDataset,
    datasets=[
        dict(
            type=GroupedExpressionDataset,
            data_root=data_root,
            ann_files=[f'annotations/train_{task}.jsonl'],
            task=task,
            template='gsva_seg',
            max_expressions=max_expressions,
            pipeline=per_dataset_train_pipelines[task],
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
            pipeline=per_dataset_test_pipelines[task],
            test_mode=True,
        )
        for task in val_seg_tasks
    ],
)
test_dataloader = val_dataloader
