# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""The paper-scale AnyRef-7B config builds on the meta device with the paper's size.

AnyRef prints no total; the reference is the sum of the published sizes of the parts it names:
LLaMA-7B 6.7 B (LLaMA paper, Table 2), CLIP ViT-L/14 0.307 B (ViT paper, Table 1: ViT-Large),
SAM ViT-H 0.636 B (SAM paper: a 632 M image encoder + ~4 M prompt encoder and mask decoder) and
ImageBind-H's audio tower, a ViT-B (ViT paper, Table 1: 86 M). The build adds LLaVA's linear
projector (4.2 M), the audio projector (4.2 M), gamma (17.8 M) and LoRA r=8 on q / v (4.2 M),
which no paper figure counts.
"""

import importlib.util
import os.path as osp
import sys

REPO = osp.dirname(osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))
CONFIG = osp.join(REPO, 'projects', 'anyref', 'configs', 'anyref_7b.py')
PAPER = dict(llm=6.7e9, clip=0.307e9, sam=0.636e9, audio=0.086e9)
PAPER_TOTAL = sum(PAPER.values())


def _tool():
    spec = importlib.util.spec_from_file_location(
        'count_params_anyref', osp.join(REPO, 'tools', 'analysis', 'count_params.py')
    )
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


def test_paper_scale_builds_on_meta_with_the_papers_size():
    tool = _tool()
    model, _ = tool.build_model(CONFIG, meta=True)
    rows = {r.name: r for r in tool.count_modules(model, decoder_parts=True)}
    total = rows['total'].total
    assert abs(total - PAPER_TOTAL) / PAPER_TOTAL < 0.01, total
    assert abs(rows['  mask.sam'].total - PAPER['sam']) / PAPER['sam'] < 0.01
    assert rows['vision_encoder (CLIP-ViT)'].total == 303_179_776  # ViT-L/14 at 224
    assert rows['projector'].total == 1024 * 4096 + 4096  # LLaVA v1: one linear layer
    assert rows['  mask.text_proj'].total == 4096 * 4096 + 4096 + 4096 * 256 + 256  # gamma
    audio = rows['input encoder: <aud_feat>']
    proj = 1024 * 4096 + 4096
    assert abs(audio.total - proj - PAPER['audio']) / PAPER['audio'] < 0.01
    assert audio.trainable == proj  # ImageBind frozen, its projector trained
    assert rows['input encoder: <img_feat>'].total == 0  # RoIAlign and pooling: no weights
    # trainable: LoRA r=8 on q, v, the new token rows of the embedding and the LM head, both
    # projectors, gamma and SAM's mask decoder; CLIP, ImageBind and SAM's image encoder frozen
    lora = 32 * 2 * 8 * (4096 + 4096)
    new_rows = 2 * len(set(model.tokenizer.ids.values())) * 4096
    assert rows['llm'].trainable == lora + new_rows
    assert rows['vision_encoder (CLIP-ViT)'].trainable == 0
    assert rows['projector'].trainable == rows['projector'].total
    sam = model.unit_decoders.mask.sam
    assert not any(p.requires_grad for p in sam.vision_encoder.parameters())
    assert any(p.requires_grad for p in sam.mask_decoder.parameters())
    assert model.ref_refiner.lambda_f == 0.1
