# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""Swapping a unit decoder is a config change: the demo model with its ``box`` decoder replaced by
another registered box decoder and its ``mask`` decoder replaced by the SAM plugin, built from the
config and trained one step on real demo records."""

import copy
import json
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope
from mmengine.structures import InstanceData
from torch import nn

from mmrefvlm.datasets import (
    BuildUnitTargets,
    FormatConversation,
    LoadRecordImage,
    PackRefVLMInputs,
    PrepareImages,
    refvlm_collate,
)
from mmrefvlm.datasets.transforms import BoxTarget, MaskTarget
from mmrefvlm.models import BoxUnitDecoder, MaskUnitDecoder
from mmrefvlm.models.unit_decoders import BaseVisualUnitDecoder
from mmrefvlm.registry import MODELS

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
DEMO = osp.join(REPO, 'data', 'demo')


class CentreBoxDecoder(BaseVisualUnitDecoder):
    """A deliberately different ``box`` decoder: a linear map of the <REF> state + pooled CLIP."""

    unit = 'box'

    def __init__(self, in_channels, clip_channels, num_queries=8):
        super().__init__(in_channels, num_queries=num_queries)
        self.head = nn.Linear(in_channels + clip_channels, 4)

    def forward(self, queries, visual):
        pooled = visual.clip.float().mean((2, 3))[:, None].expand(-1, queries.mask.shape[1], -1)
        return dict(boxes=self.head(torch.cat([queries.embeds.float(), pooled], -1)).sigmoid())

    def loss(self, queries, visual, batch_data_samples):
        pred = self(queries, visual)['boxes'][queries.mask]
        tgt = torch.cat([s.gt_units.box.bboxes for s in batch_data_samples if 'box' in s.gt_units])
        return dict(loss_box_centre=(pred - tgt).abs().mean())

    def predict(self, queries, visual, batch_data_samples, rescale=True):
        boxes = self(queries, visual)['boxes']
        return [
            InstanceData(
                bboxes=boxes[b][queries.mask[b]], scores=torch.ones(int(queries.mask[b].sum()))
            )
            for b in range(len(batch_data_samples))
        ]


@pytest.fixture
def centre_box_registered():
    MODELS.register_module(module=CentreBoxDecoder, force=True)
    yield
    MODELS._module_dict.pop('CentreBoxDecoder', None)


def _records():
    if not osp.isfile(osp.join(DEMO, 'annotations', 'train_res.jsonl')):
        from mmrefvlm.datasets import ensure_demo_dataset

        ensure_demo_dataset(DEMO)
    out = []
    for task in ('res', 'rec'):
        with open(osp.join(DEMO, 'annotations', f'train_{task}.jsonl'), encoding='utf-8') as f:
            out.append(json.loads(f.readline()))
    return out


def test_swap_box_and_mask_decoders_by_config(centre_box_registered):
    from projects.sam_plugin.sam_unit import PackSamImage, SamMaskUnitDecoder

    init_default_scope('mmrefvlm')
    cfg = Config.fromfile(osp.join(REPO, 'configs', 'refvlm', 'demo_stage2.py'))
    model_cfg = copy.deepcopy(cfg.model)
    assert model_cfg.unit_decoders.box.type is BoxUnitDecoder
    assert model_cfg.unit_decoders.mask.type is MaskUnitDecoder
    # --- the whole swap: two config entries (string and class types both work) ---
    model_cfg.unit_decoders.box = dict(type='CentreBoxDecoder')
    model_cfg.unit_decoders.mask = dict(
        type=SamMaskUnitDecoder,
        num_queries=8,
        match_size=16,
        sam=dict(
            vision_config=dict(
                hidden_size=32,
                num_hidden_layers=1,
                num_attention_heads=2,
                global_attn_indexes=[0],
                image_size=32,
                patch_size=8,
                window_size=4,
                output_channels=32,
            ),
            mask_decoder_config=dict(mlp_dim=32, num_attention_heads=2),
        ),
    )
    torch.manual_seed(0)
    model = MODELS.build(model_cfg)
    box, mask = model.unit_decoders['box'], model.unit_decoders['mask']
    assert type(box) is CentreBoxDecoder and type(mask) is SamMaskUnitDecoder
    hidden = model.llm.get_input_embeddings().weight.shape[1]
    assert box.in_channels == mask.in_channels == hidden  # injected by RefVLM
    assert box.head.in_features == hidden + model.vision_encoder.out_channels
    assert set(model.unit_decoders) == set(cfg.model.unit_decoders)  # the others stay

    base = cfg.model
    pipeline = [
        LoadRecordImage(),
        PrepareImages(sizes=dict(vit=cfg.vit_image_size, pyramid=cfg.pyramid_image_size, sam=32)),
        FormatConversation(
            dict(base.tokenizer),
            chat_template=cfg.chat_template,
            num_image_tokens=cfg.num_image_tokens,
            cot=cfg.use_cot,
            num_prompt_tokens=cfg.num_prompt_tokens,
        ),
        BuildUnitTargets(
            dict(box=BoxTarget(), mask=MaskTarget(size=cfg.mask_size)), with_original=False
        ),
        PackRefVLMInputs(),
        PackSamImage(),
    ]
    items = []
    for i, rec in enumerate(_records()):
        results = dict(rec, data_root=DEMO, sample_idx=i)
        for t in pipeline:
            results = t(results)
        items.append(results)
    data = model.data_preprocessor(refvlm_collate(items), training=True)
    model.train()
    losses = model(**data, mode='loss')
    assert {'loss_mask_focal', 'loss_mask_dice', 'loss_box_centre'} <= set(losses)
    assert not any(k.startswith('loss_box_l1') for k in losses)
    sum(losses.values()).backward()
    assert box.head.weight.grad is not None and box.head.weight.grad.abs().sum() > 0
    assert mask.text_proj[0].weight.grad.abs().sum() > 0
    # Every trainable parameter is reached, except the last ConvNeXt stage (and its final norm),
    # which no decoder of the demo model reads (memory / pixel levels 0-2), swap or not.
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    unused_in_base = ('pyramid_encoder.model.encoder.stages.3.', 'pyramid_encoder.model.layernorm.')
    unexpected = [n for n in missing if not n.startswith(unused_in_base)]
    assert unexpected == []


def test_stage3_sam_config_swaps_the_mask_decoder_for_sam_vit_l():
    from mmrefvlm.apis import load_config
    from projects.sam_plugin.sam_unit import PackSamImage, SamMaskUnitDecoder, sam_config_dict

    stage2 = Config.fromfile(osp.join(REPO, 'configs', 'refvlm', 'stage2.py'))
    cfg = load_config(osp.join(REPO, 'configs', 'refvlm', 'stage3_sam.py'))
    assert stage2.model.unit_decoders.mask.type is MaskUnitDecoder
    mask = cfg.model.unit_decoders.mask
    assert mask.type is SamMaskUnitDecoder and mask.sam == 'sam_vit_l'
    assert mask.checkpoint.endswith('sam_vit_l_0b3195.pth') and mask.freeze_image_encoder
    assert set(cfg.model.unit_decoders) == {'mask'}
    assert cfg.model.loss_weights == dict(llm=1.0, mask=1.0)
    assert cfg.optim_wrapper.optimizer.lr == 2e-5
    # everything but the decoders is the stage-2 model
    for key in ('llm', 'vision_encoder', 'pyramid_encoder', 'tokenizer', 'router'):
        assert cfg.model[key] == stage2.model[key], key
    pipeline = cfg.train_dataloader.dataset.datasets[0].pipeline
    assert pipeline[1].sizes['sam'] == 1024 and pipeline[-1].type is PackSamImage
    assert sam_config_dict('sam_vit_l')['vision_config']['image_size'] == 1024
