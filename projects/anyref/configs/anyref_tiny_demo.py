# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
# AnyRef on the embedded demo, on CPU: the demo's tiny LLM + CLIP-ViT (LLaVA part: linear
# projector, no ConvNeXt pyramid) + a tiny random SAM as mask decoder, trained from scratch with
# CE x 1 + BCE x 2 + DICE x 0.5 on the comparison budget (docs/seed_methods.md: `max_iters` x
# `train_batch_size` samples) spread over AnyRef's tasks: referring segmentation (the demo's
# rec / res / gres records, one <obj> per expression, union masks, all-zero for "nothing"),
# region captioning with a box reference (reg), image-referring segmentation (image_ref_seg) and
# audio-referring segmentation (audio_ref_seg; the generator's opt-in tasks). The <obj> state is
# read at its emitting position and refocused (lambda_f = 0.1) on the answer before it.
#   python tools/run_demo.py --config projects/anyref/configs/anyref_tiny_demo.py
from mmengine.config import read_base
from mmengine.dataset import ConcatDataset, DefaultSampler

with read_base():
    from ....configs.refvlm.demo_stage2 import *  # noqa: F401,F403

from mmrefvlm.datasets import (
    BuildUnitTargets,
    FormatConversation,
    LoadRecordImage,
    PrepareImages,
    RefVLMDataset,
    WeightedMultiDatasetSampler,
    refvlm_collate,
)
from mmrefvlm.datasets.transforms import MaskTarget
from mmrefvlm.evaluation import GRESMetric, RESMetric
from mmrefvlm.models import LatentEmbeddingRouter, MLPProjector, SpecialTokenRefParser
from projects.anyref.anyref_seg import (
    AnyRefCaptionMetric,
    AnyRefConversation,
    AnyRefMaskDecoder,
    AudioReferenceEncoder,
    AVSMetric,
    ObjAnswerFormat,
    PackAnyRefInputs,
    RefocusRefiner,
    SpectrogramAudioEncoder,
    VisualReferenceEncoder,
)

custom_imports = dict(imports=['projects.anyref.anyref_seg'], allow_failed_imports=False)

# --- knobs ---
anyref_tokens = [
    '<obj>', '<img_ref>', '</img_ref>', '<img_feat>', '<aud_ref>', '</aud_ref>', '<aud_feat>'
]  # fmt: skip
tokenizer = dict(source='demo', extra_tokens=anyref_tokens)
system_prompt = (
    'A chat between a curious user and an artificial intelligence assistant. The assistant '
    "gives helpful, detailed, and polite answers to the user's questions."
)
lambda_f = 0.1
ref_size = 4  # 4 x 4 tokens per visual reference
audio_windows = 3  # embeddings per sound
# AnyRef's task mix inside the comparison budget: the rec : res : gres ratios of the other rows,
# plus its own data types
train_tasks = dict(rec=4, res=4, gres=3, reg=2, image_ref_seg=2, audio_ref_seg=2)
val_tasks = ['res', 'gres', 'reg', 'image_ref_seg', 'audio_ref_seg']
# run_demo generates the dataset with the generator's opt-in reference tasks too
# (mmrefvlm.datasets.demo.ALL_DEMO_TASKS, spelt out: configs are data)
demo_dataset = dict(
    tasks=[
        'caption', 'vqa', 'rec', 'res', 'reg', 'gres', 'ig_box', 'ig_mask', 'ig_keypoint',
        'gcg_box', 'gcg_mask', 'ovd', 'ovs', 'keypoint', 'depth', 'image_ref_seg',
        'audio_ref_seg',
    ]
)  # fmt: skip
sam_image_size = 64
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
empty_pixels = 50  # ReLA's "no target" rule for models without a rejection token (as LISA)
max_length = 256
max_iters = 1200  # the seed-method comparison budget (docs/seed_methods.md)
warmup_iters = 120
lr = 1e-3

# --- model: RefVLM + AnyRef's hooks, nothing else ---
model.tokenizer = tokenizer
model.pyramid_encoder = None
model.projector = dict(type=MLPProjector, depth=1)  # LLaVA v1: one linear layer
model.router = dict(type=LatentEmbeddingRouter, ref_position='emitting')
ref_parser = dict(type=SpecialTokenRefParser, ref_tokens={'<obj>': 'mask'})
model.ref_parser = ref_parser
model.ref_refiner = dict(type=RefocusRefiner, lambda_f=lambda_f, ref_position='emitting')
model.input_encoders = {
    '<img_feat>': dict(type=VisualReferenceEncoder, size=ref_size, pooling='2d'),
    '<aud_feat>': dict(
        type=AudioReferenceEncoder,
        encoder=dict(type=SpectrogramAudioEncoder, out_dim=128, num_windows=audio_windows),
    ),
}
model.unit_decoders = dict(
    mask=dict(
        type=AnyRefMaskDecoder,
        num_queries=4,
        sam=tiny_sam,
        checkpoint=None,
        freeze_image_encoder=False,  # random weights: SAM's encoder must learn too
        match_size=32,
    )
)
model.loss_weights = dict(llm=1.0, mask=1.0)  # CE x 1; BCE x 2, DICE x 0.5 inside the decoder
model.max_new_tokens = 16

# --- data ---
_load = [
    dict(type=LoadRecordImage),
    dict(type=PrepareImages, sizes=dict(vit=vit_image_size, sam=sam_image_size)),
    dict(
        type=AnyRefConversation,
        image_size=vit_image_size,
        visual_tokens=ref_size * ref_size,
        audio_tokens=audio_windows,
        system=system_prompt,
    ),
]
_format = dict(
    type=FormatConversation,
    tokenizer=tokenizer,
    chat_template=chat_template,
    num_image_tokens=num_image_tokens,
    num_prompt_tokens=num_prompt_tokens,
    cot=False,
    max_length=max_length,
    extra_template_dirs=['projects.anyref.anyref_seg:templates'],
    answer_format=dict(type=ObjAnswerFormat),
    ref_parser=ref_parser,  # the pipeline's label_refs are what the training step routes
)
_targets = dict(mask=dict(type=MaskTarget, size=mask_size, allow_empty=True))
anyref_train_pipeline = _load + [
    _format,
    dict(type=BuildUnitTargets, unit_targets=_targets, with_original=False),
    dict(type=PackAnyRefInputs),
]
anyref_test_pipeline = _load + [
    dict(_format, predict=True),
    dict(type=BuildUnitTargets, unit_targets=_targets),
    dict(type=PackAnyRefInputs),
]
train_dataloader.sampler = dict(type=WeightedMultiDatasetSampler, ratios=list(train_tasks.values()))
train_dataloader.dataset = dict(
    type=ConcatDataset,
    datasets=[
        dict(
            type=RefVLMDataset,
            data_root=data_root,
            ann_file=f'annotations/train_{task}.jsonl',
            pipeline=anyref_train_pipeline,
        )
        for task in train_tasks
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
                pipeline=anyref_test_pipeline,
                test_mode=True,
            )
            for task in val_tasks
        ],
    ),
)
test_dataloader = val_dataloader
val_evaluator = [
    dict(type=RESMetric),
    dict(type=GRESMetric, empty_rule='pixels', empty_pixels=empty_pixels),
    dict(type=AnyRefCaptionMetric, meteor=True),
    dict(type=RESMetric, tasks=('image_ref_seg',), prefix='imgref'),
    dict(type=AVSMetric),
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
