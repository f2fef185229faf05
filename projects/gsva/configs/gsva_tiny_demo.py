# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
# GSVA on the embedded demo, on CPU: LISA's tiny model (projects/lisa/configs/lisa_tiny_demo.py)
# with GSVA's answers "Sure, e1:[SEG], e2:[REJ]." (one weight-shared [SEG] per expression, each
# prefixed by its text; [REJ] for an expression that matches nothing, never decoded), trained on
# the demo's rec / res / gres records grouped by image (1-3 expressions per sample, random order)
# for the same budget as LISA. Evaluated in the paper's mode (free generation) on the
# comparison's val split:
#   python tools/run_demo.py --config projects/gsva/configs/gsva_tiny_demo.py
# then, with the same checkpoint, on all expressions of an image per prompt
# (gsva_tiny_demo_grouped.py) and in the teacher-forced mode of GSVA's code (gsva_tiny_demo_tf.py).
from mmengine.config import read_base
from mmengine.dataset import ConcatDataset

with read_base():
    from ...lisa.configs.lisa_tiny_demo import *  # noqa: F401,F403

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
tokenizer = dict(source='demo', extra_tokens=[seg_token, rej_token])
max_expressions = 5  # GSVA's default number of [SEG] per training sample (the demo has <= 3)
eval_mode = 'generate'
# the text before ':' of each slot is its expression ("Sure, e1:[SEG], e2:[REJ].")
phrase_pattern = r'(?:^|,)\s*(?:Sure,\s*)?(?P<phrase>[^,:]*?)\s*:\s*$'

# --- model: LISA's, with [REJ] and per-slot outputs ---
model.type = GSVARefVLM
model.eval_mode = eval_mode
model.tokenizer = tokenizer
ref_parser = dict(
    type=SpecialTokenRefParser,
    ref_tokens={seg_token: 'mask'},
    reject_tokens={rej_token: 'mask'},
    phrase_pattern=phrase_pattern,
)
model.ref_parser = ref_parser
model.unit_decoders.mask.num_queries = max_expressions
model.max_new_tokens = 40

# --- data ---
_load = [
    dict(type=LoadRecordImage),
    dict(type=UnionExpressionTargets, empty='reject', template='gsva_seg', system=system_prompt),
    dict(type=PrepareImages, sizes=dict(vit=vit_image_size, sam=sam_image_size)),
]
_format = dict(
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
gsva_train_pipeline = [
    dict(type=SampleExpressions),
    *_load,
    _format,
    dict(type=BuildUnitTargets, unit_targets=_targets, with_original=False),
    dict(type=PackRefVLMInputs),
    dict(type=PackSamImage, key='sam'),
]
gsva_test_pipeline = _load + [
    dict(_format, predict=True),
    dict(type=BuildUnitTargets, unit_targets=_targets),
    dict(type=PackRefVLMInputs),
    dict(type=PackSamImage, key='sam'),
]
train_dataloader.sampler = dict(type=WeightedMultiDatasetSampler, ratios=[1.0])
train_dataloader.dataset = dict(
    type=ConcatDataset,
    datasets=[
        dict(
            type=GroupedExpressionDataset,
            data_root=data_root,
            ann_files=[f'annotations/train_{task}.jsonl' for task in seg_tasks],
            max_expressions=max_expressions,
            pipeline=gsva_train_pipeline,
        )
    ],
)
# the comparison's val split: the single-expression res / gres records
val_dataloader.dataset = dict(
    type=ConcatDataset,
    datasets=[
        dict(
            type=RefVLMDataset,
            data_root=data_root,
            ann_file=f'annotations/val_{task}.jsonl',
            pipeline=gsva_test_pipeline,
            test_mode=True,
        )
        for task in val_seg_tasks
    ],
)
# all expressions of a val image in one prompt, as GSVA's code evaluates (task `gsva_seg`); used
# by gsva_tiny_demo_grouped.py and gsva_tiny_demo_tf.py
grouped_val_dataset = dict(
    type=GroupedExpressionDataset,
    data_root=data_root,
    ann_files=[f'annotations/val_{task}.jsonl' for task in seg_tasks],
    task='gsva_seg',
    template='gsva_seg',
    max_expressions=max_expressions,
    pipeline=gsva_test_pipeline,
    test_mode=True,
)
test_dataloader = val_dataloader
val_evaluator = [
    dict(type=MMDetRefSegMetric),
    dict(type=GRESMetric),  # [REJ] -> no mask -> "predicted empty" (empty_rule='ref')
    dict(type=GSVAGRESMetric, mode='paper'),
]
test_evaluator = val_evaluator
