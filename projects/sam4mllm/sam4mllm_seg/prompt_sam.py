# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""``PromptableSam``: SAM driven by box + labelled-point prompts (SAM4MLLM's post-processor), and
``SamPromptSegmentor``, the model that fine-tunes it on its own, apart from the MLLM (the paper
fine-tunes EfficientViT-SAM's decoder on COCO for one epoch before MLLM training)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from mmengine.logging import print_log
from mmengine.model import BaseModel, BaseModule
from mmengine.structures import BaseDataElement
from torch import Tensor

from mmrefvlm.registry import MODELS
from mmrefvlm.utils.checkpoint import load_state_file
from projects.sam_plugin.sam_unit import (
    SAM_PIXEL_MEAN,
    SAM_PIXEL_STD,
    build_sam_model,
    load_official_sam_checkpoint,
)


@MODELS.register_module()
class PromptableSam(BaseModule):
    """SAM (HF ``SamModel``) with box and point prompts, one mask per prompt.

    Prompts are continuous coordinates in the pixels of SAM's square input frame (``image_size``):
    the image is padded right/bottom to a square and resized, so an original-pixel coordinate
    ``c`` becomes ``c * image_size / square_size`` (SAM's prompt encoder adds half a pixel to
    integer click positions; ``decode`` takes that half pixel off first). Each prompt is one box
    plus any number of labelled points (1 on the object, 0 off it); prompts are decoded in groups
    of equal point count, so no padding point changes a mask. ``multimask_output=False``: the
    single-mask output (the public code takes the best of three; a tiny SAM trained with one
    output has only that one).

    Args:
        sam (str | dict): A preset (``'sam_vit_b'``, ``'sam_vit_l'``, ``'sam_vit_h'``) or
            ``dict(preset=..., vision_config=..., prompt_encoder_config=...,
            mask_decoder_config=...)``. Defaults to ``'sam_vit_l'``.
        checkpoint (str, optional): SAM weights (local file, read weights-only).
        checkpoint_format (str): ``'official'`` (segment-anything's layout, converted) or
            ``'hf'`` (HF ``SamModel`` names, e.g. a :class:`SamPromptSegmentor` checkpoint with
            ``checkpoint_prefix='sam.sam.'``). Defaults to ``'official'``.
        checkpoint_prefix (str): Key prefix in ``checkpoint``. Defaults to ``''``.
        pixel_mean (Sequence[float]): RGB mean (0-255). Defaults to SAM's.
        pixel_std (Sequence[float]): RGB std (0-255). Defaults to SAM's.
        init_cfg (dict, optional): MMEngine init config.
    """

    def __init__(
        self,
        sam: str | Mapping[str, Any] = 'sam_vit_l',
        *,
        checkpoint: str | None = None,
        checkpoint_format: str = 'official',
        checkpoint_prefix: str = '',
        pixel_mean: Sequence[float] = SAM_PIXEL_MEAN,
        pixel_std: Sequence[float] = SAM_PIXEL_STD,
        init_cfg=None,
    ) -> None:
        super().__init__(init_cfg=init_cfg)
        spec = {'preset': sam} if isinstance(sam, str) else dict(sam)
        self.sam = build_sam_model(spec.pop('preset', None), spec)
        if checkpoint_format not in ('official', 'hf'):
            raise ValueError(
                f"checkpoint_format must be 'official' or 'hf', got {checkpoint_format!r}"
            )
        if checkpoint is None:
            self._official_random_init()
        elif checkpoint_format == 'official':
            load_official_sam_checkpoint(self.sam, checkpoint, checkpoint_prefix)
        else:
            self._load_hf(checkpoint, checkpoint_prefix)
        self.register_buffer('pixel_mean', torch.tensor(pixel_mean).view(3, 1, 1), False)
        self.register_buffer('pixel_std', torch.tensor(pixel_std).view(3, 1, 1), False)

    def _official_random_init(self) -> None:
        """PyTorch's default layer init and a unit-scale Fourier code, as the official SAM gets
        without a checkpoint (HF's tiny-std init gives near-constant masks)."""
        with torch.no_grad():
            for module in self.sam.modules():
                if hasattr(module, 'reset_parameters'):
                    module.reset_parameters()
            gauss = torch.randn_like(self.sam.shared_image_embedding.positional_embedding)
            self.sam.shared_image_embedding.positional_embedding.copy_(gauss)
            self.sam.prompt_encoder.shared_embedding.positional_embedding.copy_(gauss)

    def _load_hf(self, path: str, prefix: str) -> None:
        """Load HF-named SAM weights (strict: every SAM parameter, no extra key)."""
        obj = load_state_file(path)
        state = obj.get('state_dict', obj) if isinstance(obj, Mapping) else obj
        sel = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
        if not sel:
            raise KeyError(f'{path}: no key starts with {prefix!r}')
        self.sam.load_state_dict(sel, strict=True)

    def init_weights(self) -> None:
        """Never re-initialise SAM (it may hold a checkpoint)."""
        self._is_init = True

    @property
    def image_size(self) -> int:
        """SAM's input side."""
        return int(self.sam.config.vision_config.image_size)

    def encode(self, images: Tensor) -> Tensor:
        """Image embeddings of (B, 3, S, S) uint8 or 0-255 float images (resized to
        ``image_size`` when S differs) -> (B, C, h, w) float."""
        pixels = images.float()
        if pixels.shape[-1] != self.image_size:
            pixels = F.interpolate(
                pixels, size=(self.image_size,) * 2, mode='bilinear', align_corners=False
            )
        pixels = (pixels - self.pixel_mean) / self.pixel_std
        return self.sam.vision_encoder(pixels)[0]

    def decode(
        self,
        embeddings: Tensor,
        boxes: Tensor,
        points: Sequence[Tensor] | None = None,
    ) -> Tensor:
        """Low-resolution mask logits of N prompts.

        Args:
            embeddings (Tensor): (N, C, h, w) image embedding of each prompt's image.
            boxes (Tensor): (N, 4) float ``xyxy`` in SAM-input pixels.
            points (Sequence[Tensor], optional): N tensors (P_i, 3) float ``x, y, label`` in
                SAM-input pixels (P_i may be 0). None: boxes only.

        Returns:
            Tensor: (N, 4h, 4w) float logits over SAM's square input frame.
        """
        num = boxes.shape[0]
        counts = [0] * num if points is None else [len(p) for p in points]
        out = embeddings.new_zeros(num, 4 * embeddings.shape[-2], 4 * embeddings.shape[-1])
        for count in sorted(set(counts)):
            inds = [i for i, c in enumerate(counts) if c == count]
            sel = torch.tensor(inds, device=boxes.device)
            pts = lab = None
            if count:
                stacked = torch.stack([points[i] for i in inds])  # type: ignore[index]
                pts, lab = stacked[:, None, :, :2].float() - 0.5, stacked[:, None, :, 2].long()
            sparse, dense = self.sam.prompt_encoder(
                input_points=pts,
                input_labels=lab,
                input_boxes=boxes[sel][:, None].float() - 0.5,
                input_masks=None,
            )
            pos = self.sam.get_image_wide_positional_embeddings()
            logits, _ = self.sam.mask_decoder(
                image_embeddings=embeddings[sel],
                image_positional_embeddings=pos.expand(len(inds), -1, -1, -1),
                sparse_prompt_embeddings=sparse,
                dense_prompt_embeddings=dense,
                multimask_output=False,
            )
            out = out.index_put((sel,), logits[:, 0, 0].to(out.dtype))
        return out


def seg_losses(logits: Tensor, target: Tensor) -> dict[str, Tensor]:
    """Mean per-mask BCE and dice (``1 - (2 sum(p t) + 1) / (sum(p) + sum(t) + 1)``).

    Args:
        logits (Tensor): (N, H, W) float.
        target (Tensor): (N, H, W) bool / float (same size).
    """
    target = target.float()
    bce = F.binary_cross_entropy_with_logits(logits, target, reduction='none').flatten(1).mean(1)
    prob = logits.sigmoid().flatten(1)
    t = target.flatten(1)
    dice = 1 - (2 * (prob * t).sum(1) + 1) / (prob.sum(1) + t.sum(1) + 1)
    return dict(loss_bce=bce.mean(), loss_dice=dice.mean())


@MODELS.register_module()
class SamPromptSegmentor(BaseModel):
    """Fine-tunes :class:`PromptableSam` on (image, box + points, mask) samples.

    Samples come from :class:`SamPromptSample` (in ``data_samples``: ``sam_image`` (3, S, S)
    uint8, ``prompt_box`` (4,), ``prompt_points`` (P, 3), ``gt_mask`` (M, M) bool, all in SAM's
    square input frame). Loss: BCE + dice on the low-resolution logits resized to ``M``.
    ``predict`` writes ``pred_mask`` (M, M) bool; :class:`PromptIoUMetric` scores it.

    Args:
        sam (dict | PromptableSam): The SAM to train.
        freeze_image_encoder (bool): Keep SAM's image encoder fixed (a pretrained SAM); a random
            tiny SAM needs it trained. Defaults to True.
        loss_weights (Mapping[str, float]): ``bce`` and ``dice``. Defaults to 1 each.
        data_preprocessor (dict, optional): Defaults to MMEngine's ``BaseDataPreprocessor``.
    """

    def __init__(
        self,
        sam: dict | PromptableSam,
        *,
        freeze_image_encoder: bool = True,
        loss_weights: Mapping[str, float] | None = None,
        data_preprocessor: dict | None = None,
        init_cfg=None,
    ) -> None:
        super().__init__(
            data_preprocessor=data_preprocessor or dict(type='BaseDataPreprocessor'),
            init_cfg=init_cfg,
        )
        self.sam = MODELS.build(sam) if isinstance(sam, Mapping) else sam
        self.sam.sam.requires_grad_(True)
        if freeze_image_encoder:
            self.sam.sam.vision_encoder.requires_grad_(False)
        # The IoU head and the three multimask hypernetworks never reach the single-mask output.
        self.sam.sam.mask_decoder.iou_prediction_head.requires_grad_(False)
        for mlp in self.sam.sam.mask_decoder.output_hypernetworks_mlps[1:]:
            mlp.requires_grad_(False)
        self.loss_weights = {'bce': 1.0, 'dice': 1.0, **(loss_weights or {})}
        if freeze_image_encoder is False:
            print_log('SamPromptSegmentor: training the SAM image encoder too', logger='current')

    def _logits(self, data_samples: Sequence[BaseDataElement]) -> Tensor:
        images = torch.stack([s.sam_image for s in data_samples])
        emb = self.sam.encode(images)
        boxes = torch.stack([s.prompt_box for s in data_samples]).to(emb)
        points = [s.prompt_points.to(emb) for s in data_samples]
        return self.sam.decode(emb, boxes, points)

    def forward(self, inputs: Any, data_samples: list | None = None, mode: str = 'tensor'):
        """``loss`` / ``predict`` / ``tensor`` (logits) on a list of prompt samples."""
        if data_samples is None:
            raise ValueError('SamPromptSegmentor needs data_samples')
        logits = self._logits(data_samples)
        if mode == 'tensor':
            return logits
        size = data_samples[0].gt_mask.shape[-1]
        logits = F.interpolate(logits[:, None], size=(size, size), mode='bilinear')[:, 0]
        if mode == 'loss':
            target = torch.stack([s.gt_mask for s in data_samples])
            losses = seg_losses(logits, target)
            return {k: v * self.loss_weights[k[5:]] for k, v in losses.items()}
        if mode == 'predict':
            for s, lg in zip(data_samples, logits, strict=True):
                s.pred_mask = lg > 0
            return data_samples
        raise ValueError(f"mode must be 'loss', 'predict' or 'tensor', got {mode!r}")
