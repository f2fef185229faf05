# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""Synthetic batches of the shape VT-Instruct stage 2 produces, for the paper-scale benchmarks.

Each sample is what ``PackRefVLMInputs`` emits (``dict(inputs=..., data_samples=...)``), so a batch
goes through the real ``refvlm_collate`` -> ``RefVLMDataPreprocessor`` -> ``RefVLM.loss`` /
``encode_images`` path. Layout of one training sample (every sample exactly ``seq_len`` tokens, so
a batch has no padding and the token count per step is exact)::

    BOS | prompt text | <image> x N_img | ([VPT] x k^2) | prompt text || answer ... EOS
    \\____________ labels -100 (a single-turn conversation's prompt) ___/ \\_ labelled _/

* ``N_img`` = the vision encoder's patch tokens (576 for CLIP-L/14 at 336); the images are random
  uint8 at each encoder's input size (336 and 512 for the paper config);
* the answer (``answer_tokens`` labelled tokens, EOS included) is a real TRP answer rendered by
  ``trp.build_answer`` with its VD-CoT block: per decoder unit, ``refs_per_unit`` ``<REF>``s in
  two phrase groups (sizes 1 and ``refs - 1``, so the grouped Hungarian matching has work), then
  plain-text filler up to the length;
* targets in ``gt_units``: normalised xyxy boxes and ``mask_size`` x ``mask_size`` bool masks
  (rectangles) inside the image part of a 640 x 480 landscape image padded to a square;
* every ``prompt_every``-th sample has one visual prompt (a box region rasterised at the CLIP
  input size) and its ``[VPT]`` tokens; the others run the model's fake-prompt path.

Filler tokens are drawn from the tokenizer's ordinary ids (no special token), seeded.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from mmengine.structures import BaseDataElement, InstanceData

ORI_SHAPE = (480, 640)  # (h, w) of the synthetic source image; square frame 640


@dataclass(frozen=True)
class BatchSpec:
    """Shape of the synthetic training samples (see the module docstring).

    Attributes:
        seq_len (int): Tokens per sample (image tokens included).
        answer_tokens (int): Labelled tokens per sample (answer + EOS).
        refs_per_unit (int): ``<REF>`` tokens per sample for each decoder unit.
        prompt_every (int): Every k-th sample has one visual prompt; 0: none.
        mask_size (int): Side of the mask targets (the pipeline's ``MaskTarget`` size).
        seed (int): Seed of every random choice.
    """

    seq_len: int = 1024
    answer_tokens: int = 256
    refs_per_unit: int = 4
    prompt_every: int = 4
    mask_size: int = 336
    seed: int = 0


def filler_ids(tokenizer) -> torch.Tensor:
    """Ordinary token ids of ``tokenizer`` (every special / TRP / BOS / EOS / pad id removed)."""
    special = set(tokenizer.ids.values()) | {tokenizer.ids.eos, tokenizer.ids.pad}
    if tokenizer.ids.bos is not None:
        special.add(tokenizer.ids.bos)
    special |= set(getattr(tokenizer.hf, 'all_special_ids', []) or [])
    return torch.tensor([i for i in range(len(tokenizer)) if i not in special])


def ref_group_sizes(refs: int) -> list[int]:
    """Phrase-group sizes of ``refs`` ``<REF>``s: (1, refs - 1), or (1,) for one."""
    if refs <= 0:
        raise ValueError(f'refs_per_unit must be positive, got {refs}')
    return [1] if refs == 1 else [1, refs - 1]


def trp_answer(units: list[str], refs: int) -> list:
    """A structured answer with ``refs`` ``<REF>``s per unit in :func:`ref_group_sizes` groups."""
    answer: list = []
    for unit in units:
        for n in ref_group_sizes(refs):
            phrase = 'the object' if n == 1 else 'the objects'
            answer += [{'phrase': phrase, 'groups': [{'units': [unit], 'n': n}]}, ' and ']
    answer[-1] = '.'
    return answer


def _boxes(gen: torch.Generator, n: int, valid_h: float) -> torch.Tensor:
    """(n, 4) normalised xyxy boxes inside ``[0, 1] x [0, valid_h]``."""
    wh = 0.1 + 0.3 * torch.rand(n, 2, generator=gen)
    xy = torch.rand(n, 2, generator=gen) * (torch.tensor([1.0, valid_h]) - wh)
    return torch.cat([xy, xy + wh], 1)


def _masks(boxes: torch.Tensor, size: int) -> torch.Tensor:
    """(n, size, size) bool rectangles of ``boxes`` (normalised xyxy)."""
    centres = (torch.arange(size) + 0.5) / size
    inx = (centres[None] >= boxes[:, 0:1]) & (centres[None] < boxes[:, 2:3])
    iny = (centres[None] >= boxes[:, 1:2]) & (centres[None] < boxes[:, 3:4])
    return iny[:, :, None] & inx[:, None, :]


def _metainfo(idx: int) -> dict:
    side = max(ORI_SHAPE)
    return dict(
        ori_shape=ORI_SHAPE,
        square_size=side,
        sample_idx=idx,
        record_id=f'synthetic_{idx}',
        has_image=True,
    )


def _images(model, gen: torch.Generator) -> dict[str, torch.Tensor]:
    sizes = model.data_preprocessor.image_sizes
    return {
        k: torch.randint(0, 256, (3, s, s), generator=gen, dtype=torch.uint8)
        for k, s in sizes.items()
    }


def train_samples(model, batch: int, spec: BatchSpec) -> list[dict]:
    """``batch`` packed training samples for ``model`` (see the module docstring).

    Args:
        model (RefVLM): Gives the tokenizer, the decoder units, the number of image / prompt
            tokens and the encoder input sizes.
        batch (int): Number of samples.
        spec (BatchSpec): Lengths, ``<REF>`` counts, prompts, mask size and seed.

    Returns:
        list[dict]: ``dict(inputs=dict(input_ids, labels, images, prompt_masks),
        data_samples=RefVLMDataSample)`` per sample.
    """
    from mmrefvlm.structures import RefVLMDataSample
    from mmrefvlm.trp import build_answer

    tok, ids = model.tokenizer, model.tokenizer.ids
    units = list(model.unit_decoders)
    if not set(units) <= {'box', 'mask'}:
        raise ValueError(f'synthetic targets exist for box and mask decoders only, got {units}')
    gen = torch.Generator().manual_seed(spec.seed)
    fill = filler_ids(tok)
    trp = tok.encode(build_answer(trp_answer(units, spec.refs_per_unit), cot=True))
    n_img, n_vpt = model.vision_encoder.num_tokens, model.prompt_encoder.num_tokens
    prompt_len = spec.seq_len - spec.answer_tokens
    if len(trp) + 1 > spec.answer_tokens:
        raise ValueError(
            f'answer_tokens={spec.answer_tokens} is shorter than the TRP answer of '
            f'{spec.refs_per_unit} refs per unit x {len(units)} units ({len(trp) + 1} tokens)'
        )
    if prompt_len < 3 + n_img + n_vpt:
        raise ValueError(
            f'seq_len={spec.seq_len} - answer_tokens={spec.answer_tokens} leaves {prompt_len} '
            f'prompt tokens for {n_img} image tokens (+{n_vpt} [VPT])'
        )
    valid_h = ORI_SHAPE[0] / max(ORI_SHAPE)
    samples = []
    for i in range(batch):
        has_prompt = spec.prompt_every > 0 and i % spec.prompt_every == spec.prompt_every - 1
        vis = [ids.image] * n_img + [ids.vpt] * (n_vpt if has_prompt else 0)
        text = prompt_len - 1 - len(vis)
        pick = fill[torch.randint(len(fill), (text + spec.answer_tokens,), generator=gen)].tolist()
        head = text // 4  # system + instruction before the image, the question after it
        answer = trp + pick[text : text + spec.answer_tokens - len(trp) - 1] + [ids.eos]
        input_ids = [ids.bos] + pick[:head] + vis + pick[head:text] + answer
        labels = [-100] * prompt_len + answer
        sample = RefVLMDataSample(metainfo=_metainfo(i))
        gt = BaseDataElement()
        gid = 0
        for unit in units:
            sizes = ref_group_sizes(spec.refs_per_unit)
            boxes = _boxes(gen, spec.refs_per_unit, valid_h)
            fields = (
                dict(bboxes=boxes) if unit != 'mask' else dict(masks=_masks(boxes, spec.mask_size))
            )
            groups = torch.repeat_interleave(
                torch.arange(gid, gid + len(sizes)), torch.tensor(sizes)
            )
            gid += len(sizes)
            gt.set_field(
                InstanceData(**fields, group_ids=groups, instance_ids=torch.arange(len(groups))),
                unit,
            )
        sample.gt_units = gt
        side = model.vision_encoder.image_size
        prompts = torch.zeros(int(has_prompt), side, side, dtype=torch.bool)
        if has_prompt:
            prompts[0] = _masks(_boxes(gen, 1, valid_h), side)[0]
        inputs = dict(
            input_ids=torch.tensor(input_ids, dtype=torch.long),
            labels=torch.tensor(labels, dtype=torch.long),
            images=_images(model, gen),
            prompt_masks=prompts,
        )
        samples.append(dict(inputs=inputs, data_samples=sample))
    return samples


def predict_samples(
    model, batch: int, *, prompt_text: tuple[int, int], seed: int = 0
) -> list[dict]:
    """``batch`` packed inference prompts: ``BOS | text | <image> x N_img | text``, the text
    lengths uniform in ``prompt_text`` (so a batch is left-padded), labels all -100."""
    from mmrefvlm.structures import RefVLMDataSample

    ids = model.tokenizer.ids
    gen = torch.Generator().manual_seed(seed)
    fill = filler_ids(model.tokenizer)
    n_img = model.vision_encoder.num_tokens
    samples = []
    for i in range(batch):
        text = int(torch.randint(prompt_text[0], prompt_text[1] + 1, (1,), generator=gen))
        pick = fill[torch.randint(len(fill), (text,), generator=gen)].tolist()
        input_ids = [ids.bos] + pick[: text // 4] + [ids.image] * n_img + pick[text // 4 :]
        side = model.vision_encoder.image_size
        inputs = dict(
            input_ids=torch.tensor(input_ids, dtype=torch.long),
            labels=torch.full((len(input_ids),), -100, dtype=torch.long),
            images=_images(model, gen),
            prompt_masks=torch.zeros(0, side, side, dtype=torch.bool),
        )
        samples.append(dict(inputs=inputs, data_samples=RefVLMDataSample(metainfo=_metainfo(i))))
    return samples
