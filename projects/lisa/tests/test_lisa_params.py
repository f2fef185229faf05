# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""The paper-scale LISA-7B and GSVA-7B configs build on the meta device with the papers' sizes.

No seed paper prints a total for LISA-7B or GSVA-7B; the reference is the sum of the published
sizes of the parts they name: LLaMA-7B 6.7 B (LLaMA paper, Table 2), ViT-L/14 0.307 B (ViT paper,
Table 1: ViT-Large) and SAM ViT-H 0.636 B (SAM paper: a 632 M image encoder + ~4 M prompt
encoder and mask decoder). The build adds LLaVA's linear projector (4.2 M), LISA's prompt MLP
(17.8 M) and LoRA r=8 on q / v (4.2 M), which no paper figure counts.
"""

import importlib.util
import os.path as osp
import sys

import pytest

REPO = osp.dirname(osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))
PAPER = dict(llm=6.7e9, clip=0.307e9, sam=0.636e9)
PAPER_TOTAL = sum(PAPER.values())


def _tool():
    spec = importlib.util.spec_from_file_location(
        'count_params_lisa', osp.join(REPO, 'tools', 'analysis', 'count_params.py')
    )
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.parametrize(
    'config', ['projects/lisa/configs/lisa_7b.py', 'projects/gsva/configs/gsva_7b.py']
)
def test_paper_scale_builds_on_meta_with_the_papers_size(config):
    tool = _tool()
    model, _ = tool.build_model(osp.join(REPO, config), meta=True)
    rows = {r.name: r for r in tool.count_modules(model, decoder_parts=True)}
    total = rows['total'].total
    assert abs(total - PAPER_TOTAL) / PAPER_TOTAL < 0.01, total
    assert abs(rows['  mask.sam'].total - PAPER['sam']) / PAPER['sam'] < 0.01
    assert rows['vision_encoder (CLIP-ViT)'].total == 303_179_776  # ViT-L/14 at 224 (257 positions)
    assert rows['projector'].total == 1024 * 4096 + 4096  # LLaVA v1: one linear layer
    assert rows['  mask.text_proj'].total == 4096 * 4096 + 4096 + 4096 * 256 + 256
    # trainable: LoRA r=8 on q, v (32 layers x 2 x 8 x (4096 + 4096)), the new token rows of the
    # embedding and the LM head, the prompt MLP and SAM's mask decoder; CLIP, the projector and
    # SAM's image encoder are frozen
    lora = 32 * 2 * 8 * (4096 + 4096)
    new_rows = 2 * len(set(model.tokenizer.ids.values())) * 4096
    assert rows['llm'].trainable == lora + new_rows
    assert rows['vision_encoder (CLIP-ViT)'].trainable == rows['projector'].trainable == 0
    sam = model.unit_decoders.mask.sam
    assert not any(p.requires_grad for p in sam.vision_encoder.parameters())
    assert any(p.requires_grad for p in sam.mask_decoder.parameters())
