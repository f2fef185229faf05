# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
# LISA on the embedded demo, on CPU: the demo's tiny LLM and CLIP-ViT (LLaVA part: linear
# projector, no ConvNeXt pyramid) + a tiny SAM as mask decoder, trained from scratch on the demo's
# rec / res / gres records rewritten to LISA's format: "Sure, it is [SEG]." with one [SEG] per
# expression (union mask of its referents; all-zero mask when it refers to nothing), the [SEG]
# state read at the emitting position, 1.0 CE + 2.0 BCE + 0.5 DICE. The seed-method comparison
# (docs/seed_methods.md) trains it for `max_iters` x `train_batch_size` samples:
#   python tools/run_demo.py --config projects/lisa/configs/lisa_tiny_demo.py
#   python tools/test.py projects/lisa/configs/lisa_tiny_demo.py CHECKPOINT
from mmengine.config import read_base
from mmengine.dataset import ConcatDataset, DefaultSampler

with read_base():
    from ....configs.refvlm.demo_stage2 import *  # noqa: F401,F403

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
from mmrefvlm.evaluation import GRESMetric
from mmrefvlm.models import LatentEmbeddingRouter, MLPProjector, SpecialTokenRefParser
from projects.lisa.lisa_seg import (
    LisaMaskDecoder,
    MMDetRefSegMetric,
    SlotAnswerFormat,
    UnionExpressionTargets,
)
from projects.sam_plugin.sam_unit import PackSamImage

custom_imports = dict(imports=['projects.lisa.lisa_seg'], allow_failed_imports=False)

# --- knobs ---
seg_token = '[SEG]'
tokenizer = dict(source='demo', extra_tokens=[seg_token])
# one system prompt for every task (LLaVA's, shortened: a tiny model gains nothing from its 40
# tokens, the CPU budget pays for them; projects/lisa/configs/lisa_7b.py has the full one)
system_prompt = 'A chat between a user and an assistant.'
seg_tasks = dict(rec=4, res=4, gres=3)  # the demo's rec : res : gres sampling ratios
val_seg_tasks = ['res', 'gres']
sam_image_size = 64  # demo images are at most 64 px; patch 4 -> 16 x 16 embedding, 64 px masks
tiny_sam = dict(
    vision_config=dict(
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        global_attn_indexes=[1],
        image_size=sam_image_size,
        patch_size=4,
        window_size=8,
        output_channels=64,
    ),
    prompt_encoder_config=dict(mask_input_channels=8),
    mask_decoder_config=dict(
        mlp_dim=128, num_hidden_layers=2, num_attention_heads=4, iou_head_hidden_dim=64
    ),
)
# ReLA's rule for models without [REJ]: a mask under 50 px is "no target". On the demo's <= 64 px
# images that is 1-4 % of the image (0.016 % on gRefCOCO), so the 1-px rule is reported too.
empty_pixels = 50
max_iters = 1200  # the seed-method comparison budget (docs/seed_methods.md)
warmup_iters = 120
lr = 1e-3

# --- model: LLaVA (tiny) + SAM (tiny, random: nothing is pretrained offline) ---
model.tokenizer = tokenizer
model.pyramid_encoder = None
model.projector = dict(type=MLPProjector, depth=1)  # LLaVA v1: one linear layer
model.router = dict(type=LatentEmbeddingRouter, ref_position='emitting')
# the same reference parser for the labels (pipeline) and the generations (model)
ref_parser = dict(type=SpecialTokenRefParser, ref_tokens={seg_token: 'mask'})
model.ref_parser = ref_parser
model.unit_decoders = dict(
    mask=dict(
        type=LisaMaskDecoder,
        num_queries=4,
        sam=tiny_sam,
        checkpoint=None,
        freeze_image_encoder=False,  # random weights: SAM's encoder must learn too
        match_size=32,
    )
)
model.loss_weights = dict(llm=1.0, mask=1.0)  # CE x 1; BCE x 2, DICE x 0.5 inside the decoder
model.max_new_tokens = 12

# --- data: rec / res / gres records in LISA's format ---
_load = [
    dict(type=LoadRecordImage),
    dict(type=UnionExpressionTargets, empty='target', template='lisa_seg', system=system_prompt),
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
    extra_template_dirs=['projects.lisa.lisa_seg:templates'],
    answer_format=dict(
        type=SlotAnswerFormat, ref_token=seg_token, prefix='Sure, it is ', slot='{token}'
    ),
    ref_parser=ref_parser,
)
_targets = dict(mask=dict(type=MaskTarget, size=mask_size, allow_empty=True))
lisa_train_pipeline = _load + [
    _format,
    dict(type=BuildUnitTargets, unit_targets=_targets, with_original=False),
    dict(type=PackRefVLMInputs),
    dict(type=PackSamImage, key='sam'),
]
lisa_test_pipeline = _load + [
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
            pipeline=lisa_train_pipeline,
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
                pipeline=lisa_test_pipeline,
                test_mode=True,
            )
            for task in val_seg_tasks
        ],
    ),
)
test_dataloader = val_dataloader
val_evaluator = [
    dict(type=MMDetRefSegMetric),
    dict(type=GRESMetric, empty_rule='pixels', empty_pixels=empty_pixels),
    dict(type=GRESMetric, prefix='gres_px1', empty_rule='pixels', empty_pixels=1),
]
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
