# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""Batch mmrefvlm samples: pad text, normalise and stack images per encoder, gather prompts."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch
from mmengine.model import BaseDataPreprocessor

from mmrefvlm.registry import MODELS
from mmrefvlm.structures import HostBatch

IGNORE_INDEX = -100
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


@MODELS.register_module()
class RefVLMDataPreprocessor(BaseDataPreprocessor):
    """Collate ``pseudo_collate`` batches of ``PackRefVLMInputs`` outputs.

    Text is padded **right** in training (attention mask 1 on real tokens only; labels -100 on
    padding) and **left** otherwise, so batched greedy generation appends after the last real token.

    Output ``inputs``: ``input_ids`` (B, L) long, ``attention_mask`` (B, L) long, ``labels`` (B, L)
    long, ``images`` {encoder: (B, 3, s, s) float normalised}, ``has_image`` (B,) bool,
    ``prompt_masks`` (P, M, M) bool (all samples' prompts, in order), ``prompt_batch_idx`` (P,)
    long, and ``host``: a :class:`~mmrefvlm.structures.HostBatch` with numpy copies of the token
    data made before the transfer, from which the model plans a step without reading the device.

    Args:
        pad_token_id (int): Pad id (``RefVLM`` fills it from its tokenizer).
        image_sizes (Mapping[str, int]): Input side per encoder (zeros for text-only samples).
        mean (Sequence[float] | Mapping): RGB mean in [0, 1] (one for all, or per encoder).
        std (Sequence[float] | Mapping): RGB std in [0, 1].
    """

    def __init__(
        self,
        pad_token_id: int,
        image_sizes: Mapping[str, int],
        mean: Sequence[float] | Mapping = CLIP_MEAN,
        std: Sequence[float] | Mapping = CLIP_STD,
        non_blocking: bool = False,
    ) -> None:
        super().__init__(non_blocking=non_blocking)
        self.pad_token_id = int(pad_token_id)
        self.image_sizes = dict(image_sizes)
        for name in self.image_sizes:
            m = mean[name] if isinstance(mean, Mapping) else mean
            s = std[name] if isinstance(std, Mapping) else std
            self.register_buffer(f'mean_{name}', torch.tensor(m).view(1, 3, 1, 1) * 255, False)
            self.register_buffer(f'std_{name}', torch.tensor(s).view(1, 3, 1, 1) * 255, False)

    def _pad(self, seqs: list[torch.Tensor], value: int, left: bool) -> torch.Tensor:
        length = max(len(s) for s in seqs)
        out = torch.full((len(seqs), length), value, dtype=torch.long)
        for i, s in enumerate(seqs):
            if left:
                out[i, length - len(s) :] = s
            else:
                out[i, : len(s)] = s
        return out

    def forward(self, data: dict, training: bool = False) -> dict:  # noqa: D102
        inputs: list[dict] = data['inputs']
        samples = data.get('data_samples')
        left = not training
        ids = [x['input_ids'] for x in inputs]
        input_ids = self._pad(ids, self.pad_token_id, left)
        attn = self._pad([torch.ones_like(s) for s in ids], 0, left)
        labels = self._pad([x['labels'] for x in inputs], IGNORE_INDEX, left)
        has_image = torch.tensor([bool(x['images']) for x in inputs])
        images = {}
        for name, size in self.image_sizes.items():
            batch = torch.zeros(len(inputs), 3, size, size, dtype=torch.uint8)
            for i, x in enumerate(inputs):
                if x['images']:
                    if name not in x['images']:
                        raise KeyError(
                            f'sample has no image for encoder {name!r}; the pipeline '
                            f'produced {sorted(x["images"])} (check PrepareImages sizes)'
                        )
                    batch[i] = x['images'][name]
            images[name] = batch
        prompts = [x['prompt_masks'] for x in inputs]
        counts = torch.tensor([len(p) for p in prompts], dtype=torch.long)
        size = next((p.shape[-1] for p in prompts if len(p)), 1)
        prompt_masks = (
            torch.cat([p for p in prompts if len(p)])
            if counts.sum() > 0
            else torch.zeros(0, size, size, dtype=torch.bool)
        )
        batch_idx = torch.repeat_interleave(torch.arange(len(inputs)), counts)
        out = dict(
            input_ids=input_ids,
            attention_mask=attn,
            labels=labels,
            has_image=has_image,
            prompt_masks=prompt_masks,
            prompt_batch_idx=batch_idx,
        )
        host = HostBatch(  # copies: the CPU tensors may be the ones handed to the model
            input_ids=input_ids.numpy().copy(),
            labels=labels.numpy().copy(),
            lengths=np.array([len(s) for s in ids], dtype=np.int64),
            offsets=np.array(
                [input_ids.shape[1] - len(s) if left else 0 for s in ids], dtype=np.int64
            ),
            has_image=has_image.numpy(),
            prompt_counts=counts.numpy(),
        )
        out = self.cast_data(out)
        out['host'] = host
        out['images'] = {
            name: (self.cast_data(img).float() - getattr(self, f'mean_{name}'))
            / getattr(self, f'std_{name}')
            for name, img in images.items()
        }
        return dict(
            inputs=out, data_samples=self.cast_data(samples) if samples is not None else None
        )
