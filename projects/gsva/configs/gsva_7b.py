# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
# GSVA-Vicuna-7B (Xia et al., CVPR 2024, `shared/seeds/002_*`): LISA-7B (lisa_7b.py: LLaVA-7B +
# SAM ViT-H, LoRA r=8 on q/v) with GSVA's answers "Sure, e1:[SEG], e2:[REJ]." - one weight-shared
# [SEG] per expression, prefixed by its text, up to 5 per sample, [REJ] for an absent target
# (never decoded). Pretraining schedule of Table 7: AdamW lr 3e-4, 50 000 steps, 8 GPUs x batch
# 2 x 10 accumulation steps, bf16. Evaluate in both modes (free generation; teacher-forced with
# `model.eval_mode='teacher_forced'` and the answer kept in the test pipeline, as
# gsva_tiny_demo_tf.py does).
#   torchrun --nproc_per_node 8 tools/train.py projects/gsva/configs/gsva_7b.py --launcher pytorch
#   python tools/analysis/count_params.py projects/gsva/configs/gsva_7b.py --meta
from mmengine.config import read_base
from mmengine.dataset import ConcatDataset

with read_base():
    from ...lisa.configs.lisa_7b import *  # noqa: F401,F403

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
from mmrefvlm.evaluation import GRESMetric
from mmrefvlm.models import SpecialTokenRefParser
from projects.gsva.gsva_seg import (
    GroupedExpressionDataset,
    GSVAGRESMetric,
    GSVARefVLM,
    SampleExpressions,
)
from projects.lisa.lisa_seg import (
    MMDetRefSegMetric,
    SlotAnswerFormat,
    UnionExpressionTargets,
)
from projects.sam_plugin.sam_unit import PackSamImage

custom_imports = dict(imports=['projects.gsva.gsva_seg'], allow_failed_imports=False)

# --- knobs ---
rej_token = '[REJ]'
tokenizer = dict(source=llm_name_or_path, extra_tokens=[seg_token, rej_token])
max_expressions = 5  # [SEG] tokens per training sample (paper, App. E)
max_iters = 50_000
phrase_pattern = r'(?:^|,)\s*(?:Sure,\s*)?(?P<phrase>[^,:]*?)\s*:\s*$'

# --- model ---
model.type = GSVARefVLM
model.eval_mode = 'generate'
model.tokenizer = tokenizer
ref_parser = dict(
    type=SpecialTokenRefParser,
    ref_tokens={seg_token: 'mask'},
    reject_tokens={rej_token: 'mask'},
    phrase_pattern=phrase_pattern,
)
model.ref_parser = ref_parser
model.unit_decoders.mask.num_queries = max_expressions
model.max_new_tokens = 128

# --- data ---
_load = [
    dict(type=LoadRecordImage),
    dict(type=UnionExpressionTargets, empty='reject', template='gsva_seg', system=system_prompt),
    dict(type=PrepareImages, sizes=dict(vit=vit_image_size, sam=sam_image_size)),
]
_format = dict(
    type=FormatConversation,
    tokenizer=tokenizer,
    chat_template='vicuna',
    num_image_tokens=num_image_tokens,
    cot=False,
    max_length=768,
    extra_template_dirs=['projects.gsva.gsva_seg:templates'],
    answer_format=dict(type=SlotAnswerFormat, ref_token=seg_token, reject_token=rej_token),
    ref_parser=ref_parser,
)
_targets = dict(mask=dict(type=MaskTarget, size=mask_size, allow_empty=True))
train_pipeline = [
    dict(type=SampleExpressions),
    *_load,
    _format,
    dict(type=BuildUnitTargets, unit_targets=_targets, with_original=False),
    dict(type=PackRefVLMInputs),
    dict(type=PackSamImage, key='sam'),
]
test_pipeline = _load + [
    dict(_format, predict=True),
    dict(type=BuildUnitTargets, unit_targets=_targets),
    dict(type=PackRefVLMInputs),
    dict(type=PackSamImage, key='sam'),
]
train_dataloader.sampler = dict(type=WeightedMultiDatasetSampler, ratios=list(train_files.values()))
train_dataloader.dataset = dict(
    type=ConcatDataset,
    datasets=[
        dict(
            type=GroupedExpressionDataset,
            data_root=data_root,
            ann_files=[f],
            max_expressions=max_expressions,
            pipeline=train_pipeline,
            skip_bad_samples=True,
        )
        for f in train_files
    ],
)
val_dataloader.dataset = dict(
    type=ConcatDataset,
    datasets=[
        dict(
            type=RefVLMDataset,
            data_root=data_root,
            ann_file=f,
            pipeline=test_pipeline,
            test_mode=True,
        )
        for f in val_files
    ],
)
test_dataloader = val_dataloader
val_evaluator = [
    dict(type=MMDetRefSegMetric),
    dict(type=GRESMetric),
    dict(type=GSVAGRESMetric, mode='paper'),
]
test_evaluator = val_evaluator

param_scheduler[1].end = max_iters
train_cfg.max_iters = max_iters
