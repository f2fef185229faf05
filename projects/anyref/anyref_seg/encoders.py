# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""AnyRef's reference inputs as ``RefVLM`` input encoders: the rows written over ``<img_feat>``
(a box region or another image) and over ``<aud_feat>`` (a sound)."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from mmengine.model import BaseModule
from torch import Tensor, nn

from mmrefvlm.models.data_preprocessors.refvlm_data_preprocessor import CLIP_MEAN, CLIP_STD
from mmrefvlm.registry import MODELS
from mmrefvlm.structures import SampleList, VisualContext

from .roi_align import POOLINGS, pool_grid, roi_align


@MODELS.register_module()
class VisualReferenceEncoder(BaseModule):
    """``<img_feat>`` rows: ``size * size`` tokens per visual reference, through the shared
    vision -> LLM projector (so they live where the image tokens live).

    * a **box** of the query image: RoIAlign ``size x size`` on its CLIP grid (the paper: 4 x 4,
      after GPT4RoI); the box is ``(x1, y1, x2, y2)`` normalised to the square frame;
    * **another image** (the exemplar crop, CLIP-preprocessed by the same encoder): its CLIP grid
      pooled to ``size x size`` (``pooling='2d'``, the paper's words; ``'row'``, the public
      code's groups of consecutive tokens).

    The references come from ``data_sample.visual_refs``: a list, in prompt order, of
    ``{'box': (4,) float}`` or ``{'image': (3, S, S) uint8}`` (S = the CLIP input side). Without
    trainable parameters of its own: RoIAlign and pooling are parameter-free.

    Args:
        size (int): Tokens per side. Defaults to 4.
        pooling (str): ``'2d'`` or ``'row'``. Defaults to ``'2d'``.
        sampling_ratio (int): RoIAlign samples per bin side (``<= 0``: adaptive). Defaults to 2.
    """

    def __init__(self, size: int = 4, *, pooling: str = '2d', sampling_ratio: int = 2, **kwargs):
        kwargs.pop('out_channels', None)  # offered by RefVLM; the shared projector sets the width
        super().__init__(**kwargs)
        if pooling not in POOLINGS:
            raise ValueError(f'pooling must be one of {POOLINGS}, got {pooling!r}')
        self.size, self.pooling, self.sampling_ratio = size, pooling, sampling_ratio
        self.register_buffer('mean', torch.tensor(CLIP_MEAN).view(1, 3, 1, 1) * 255, False)
        self.register_buffer('std', torch.tensor(CLIP_STD).view(1, 3, 1, 1) * 255, False)

    @property
    def num_tokens(self) -> int:
        """Rows per reference."""
        return self.size * self.size

    def forward(
        self,
        data_samples: SampleList,
        *,
        visual: VisualContext,
        vision_encoder: nn.Module,
        projector: nn.Module,
    ) -> tuple[Tensor, Tensor]:
        """(M, D) rows (16 per reference, sample then prompt order) and (B,) counts."""
        clip = visual.clip  # (B, C, h, w) over the square frame
        side = clip.shape[-1]
        boxes, images, order = [], [], []
        for b, sample in enumerate(data_samples):
            for ref in sample.get('visual_refs') or []:
                if 'box' in ref:
                    box = torch.as_tensor(ref['box'], dtype=clip.dtype, device=clip.device)
                    boxes.append(torch.cat([box.new_tensor([b]), box * side]))
                    order.append(('box', len(boxes) - 1))
                else:
                    images.append(torch.as_tensor(ref['image'], device=clip.device))
                    order.append(('image', len(images) - 1))
        counts = torch.tensor(
            [len(s.get('visual_refs') or []) * self.num_tokens for s in data_samples],
            device=clip.device,
        )
        parts: dict[str, Tensor] = {}
        if boxes:
            pooled = roi_align(clip, torch.stack(boxes), self.size, 1.0, self.sampling_ratio)
            parts['box'] = pooled.flatten(2).transpose(1, 2)  # (K, size^2, C)
        if images:
            pixels = (torch.stack(images).float() - self.mean) / self.std
            parts['image'] = pool_grid(
                vision_encoder(pixels.to(clip.dtype)), self.size, self.pooling
            )
        if not order:
            return projector(clip.new_zeros(0, clip.shape[1])), counts
        tokens = torch.cat([parts[kind][i] for kind, i in order])  # (M, C)
        return projector(tokens), counts


@MODELS.register_module()
class AudioReferenceEncoder(BaseModule):
    """``<aud_feat>`` rows: ``num_windows`` embeddings per sound from an audio encoder (a
    ``MODELS`` entry: :class:`SpectrogramAudioEncoder` by default; ImageBind in the paper) and a
    linear audio -> LLM projector (random init, trainable; the paper's).

    The sounds come from ``data_sample.audio_refs``: a list of (T,) float waveforms at the
    encoder's sample rate, in prompt order.

    Args:
        out_channels (int): LLM width (``RefVLM`` fills it in).
        encoder (dict | nn.Module): The audio encoder (its ``out_dim`` and ``num_windows``).
        freeze_encoder (bool): Keep the audio encoder fixed (the paper freezes ImageBind; a
            random demo encoder must train). Defaults to False.
    """

    def __init__(
        self,
        out_channels: int,
        *,
        encoder: dict | nn.Module | None = None,
        freeze_encoder: bool = False,
        init_cfg=None,
    ) -> None:
        super().__init__(init_cfg=init_cfg)
        enc = encoder or dict(type='SpectrogramAudioEncoder')
        self.encoder = MODELS.build(enc) if isinstance(enc, Mapping) else enc
        self.freeze_encoder = freeze_encoder
        if freeze_encoder:
            self.encoder.requires_grad_(False)
        self.proj = nn.Linear(self.encoder.out_dim, out_channels)

    def forward(
        self,
        data_samples: SampleList,
        *,
        visual: VisualContext,
        vision_encoder: nn.Module,
        projector: nn.Module,
    ) -> tuple[Tensor, Tensor]:
        """(M, D) rows (``num_windows`` per sound, sample then prompt order) and (B,) counts."""
        dev = self.proj.weight.device
        waves = [
            torch.as_tensor(w, device=dev).float()
            for s in data_samples
            for w in s.get('audio_refs') or []
        ]
        per = self.encoder.num_windows
        counts = torch.tensor(
            [len(s.get('audio_refs') or []) * per for s in data_samples], device=dev
        )
        if not waves:  # a fake sound, sliced away: every parameter stays in the graph
            fake = torch.zeros(1, self.encoder.sample_rate // 4, device=dev)
            return self.proj(self.encoder(fake)).flatten(0, 1)[:0], counts
        length = max(len(w) for w in waves)
        batch = torch.stack([torch.nn.functional.pad(w, (0, length - len(w))) for w in waves])
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.freeze_encoder):
            emb = self.encoder(batch)  # (N, windows, out_dim)
        return self.proj(emb).flatten(0, 1), counts
