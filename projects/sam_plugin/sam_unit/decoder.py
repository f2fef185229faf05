# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""``SamMaskUnitDecoder``: a SAM mask decoder prompted by the ``<REF>`` state (REF-VLM stage 3,
App. C.2 / Table 12; the LISA recipe): a drop-in replacement of the MaskFormer ``mask`` decoder."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from mmengine.logging import print_log
from mmengine.structures import InstanceData
from torch import Tensor, nn

from mmrefvlm.models.matchers import flat_group_keys, mask_group_costs, match_in_groups
from mmrefvlm.models.unit_decoders import BaseVisualUnitDecoder
from mmrefvlm.models.unit_decoders.layers import valid_region_mask
from mmrefvlm.models.unit_decoders.mask import MASK_DICE_LOSS, MASK_FOCAL_LOSS, MASK_MATCH_COSTS
from mmrefvlm.models.unit_decoders.utils import (
    gather_unit_targets,
    per_sample,
    resize_maps,
    square_to_original,
)
from mmrefvlm.registry import MODELS
from mmrefvlm.structures import SampleList, UnitQueries, VisualContext

from .sam_model import build_sam_model, load_official_sam_checkpoint

#: SAM's RGB normalisation (0-255 scale), from the official model.
SAM_PIXEL_MEAN = (123.675, 116.28, 103.53)
SAM_PIXEL_STD = (58.395, 57.12, 57.375)


def bce_dice_losses(bce_weight: float, dice_weight: float, dice_eps: float) -> dict:
    """``loss_focal`` / ``loss_dice`` configs of the LISA-family mask losses for
    :class:`SamMaskUnitDecoder`: ``bce_weight`` x BCE (per mask, the mean over its valid pixels;
    averaged over the masks) and ``dice_weight`` x dice ``1 - (2 sum(p t) + e) / (sum(p) + sum(t)
    + e)`` on the valid pixels, ``e = dice_eps`` in pixel units (LISA / GSVA: 1e-3, their scale
    1000 and eps 1e-6; AnyRef: 1), averaged over the masks."""
    return dict(
        loss_focal=dict(type='mmdet.CrossEntropyLoss', use_sigmoid=True, loss_weight=bce_weight),
        loss_dice=dict(
            type='mmdet.DiceLoss',
            use_sigmoid=True,
            activate=False,
            naive_dice=True,
            eps=dice_eps,
            loss_weight=dice_weight,
        ),
    )


@MODELS.register_module()
class SamMaskUnitDecoder(BaseVisualUnitDecoder):
    """SAM mask decoder prompted by ``<REF>`` states; decodes the ``mask`` unit.

    1. Image embeddings: SAM's image encoder (frozen by default, run without gradients) on the
       square-padded image resized to SAM's input side, which the pipeline stores in each data
       sample as ``sam_image`` ((3, S, S) uint8, :class:`PackSamImage`). Only samples with
       queries are encoded.
    2. Prompt: ``MLP(in_channels -> in_channels -> prompt_dim)`` of the ``<REF>`` state is the one
       sparse prompt token; the dense prompt is SAM's ``no_mask_embed`` (LISA).
    3. SAM's two-way mask decoder (trainable), ``multimask_output=False``: one low-resolution
       (4 x the embedding grid, 256 for 1024 px) mask per query over the square frame.

    Losses and matching are the MaskFormer decoder's (:class:`MaskUnitDecoder`): 20 x sigmoid
    focal + 1 x dice on valid pixels of binarised targets, grouped Hungarian matching at
    ``match_size``. The prompt encoder, the position code and the SAM parts that cannot affect the
    single-mask output (IoU head, hypernetwork MLPs of the 3 multimask tokens) are frozen, so every
    trainable parameter gets a gradient every step (DDP without ``find_unused_parameters``).

    Without ``sam_image`` (``forward`` on its own, the model's fake-input pass, ``mode='tensor'``)
    the image embeddings are zeros: the outputs have the right shapes and touch every trainable
    parameter but carry no image content.

    Args:
        in_channels (int): LLM hidden size.
        num_queries (int): Most mask queries per sample. Defaults to 30.
        sam (str | dict): SAM architecture: a preset (``'sam_vit_b'``, ``'sam_vit_l'``,
            ``'sam_vit_h'``) or ``dict(preset=..., vision_config=..., prompt_encoder_config=...,
            mask_decoder_config=...)`` (see :func:`sam_config_dict`). Defaults to ``'sam_vit_l'``.
        checkpoint (str, optional): Official SAM checkpoint (local ``.pth`` / ``.safetensors``,
            loaded weights-only). None: random SAM (tests and CPU demos only; warns).
        checkpoint_prefix (str): Prefix of the SAM keys in ``checkpoint``. Defaults to ``''``.
        freeze_image_encoder (bool): Defaults to True.
        train_mask_decoder (bool): Defaults to True.
        loss_focal (dict): Focal loss config. Defaults to the MaskFormer decoder's (x 20).
        loss_dice (dict): Dice loss config (``activate=False``). Defaults to x 1.
        match_costs (dict): :func:`mask_group_costs` options.
        match_size (int): Side of the matching cost maps. Defaults to 64.
        mask_threshold (float): Probability threshold of predicted masks. Defaults to 0.5.
        pixel_mean (Sequence[float]): RGB mean (0-255). Defaults to SAM's.
        pixel_std (Sequence[float]): RGB std (0-255). Defaults to SAM's.
        init_cfg (dict | list[dict], optional): MMEngine init config (of the prompt MLP).

    ``forward`` returns ``mask_logits`` (B, Q, H_m, W_m) float over the square frame (zeros on
    padded slots). ``predict`` returns ``masks`` (N, H, W) bool in original pixels (or the
    square-frame (N, H_m, W_m) with ``rescale=False``) and ``scores`` (N,) = mean probability
    inside the mask.
    """

    unit = 'mask'
    #: The names under which :meth:`loss` returns its two terms (``loss_focal``, ``loss_dice``);
    #: a subclass that configures BCE instead of focal renames the first.
    loss_keys: tuple[str, str] = ('loss_mask_focal', 'loss_mask_dice')

    def __init__(
        self,
        in_channels: int,
        *,
        num_queries: int = 30,
        sam: str | Mapping[str, Any] = 'sam_vit_l',
        checkpoint: str | None = None,
        checkpoint_prefix: str = '',
        freeze_image_encoder: bool = True,
        train_mask_decoder: bool = True,
        loss_focal: dict = MASK_FOCAL_LOSS,
        loss_dice: dict = MASK_DICE_LOSS,
        match_costs: dict = MASK_MATCH_COSTS,
        match_size: int = 64,
        mask_threshold: float = 0.5,
        pixel_mean: Sequence[float] = SAM_PIXEL_MEAN,
        pixel_std: Sequence[float] = SAM_PIXEL_STD,
        init_cfg=None,
    ) -> None:
        super().__init__(in_channels, num_queries=num_queries, init_cfg=init_cfg)
        if match_size <= 0 or not 0.0 < mask_threshold < 1.0:
            raise ValueError(
                f'need match_size > 0 and 0 < mask_threshold < 1, got {match_size}, '
                f'{mask_threshold}'
            )
        spec = {'preset': sam} if isinstance(sam, str) else dict(sam)
        self.sam = build_sam_model(spec.pop('preset', None), spec)
        if checkpoint is not None:
            load_official_sam_checkpoint(self.sam, checkpoint, checkpoint_prefix)
        else:
            print_log(
                'SamMaskUnitDecoder: no SAM checkpoint given, the SAM weights are random '
                '(fine for tests, useless for real training)',
                logger='current',
                level=30,
            )
            self._official_random_init()
        prompt_dim = self.sam.config.prompt_encoder_config.hidden_size
        self.text_proj = nn.Sequential(
            nn.Linear(in_channels, in_channels),
            nn.ReLU(inplace=True),
            nn.Linear(in_channels, prompt_dim),
        )
        self.freeze_image_encoder = freeze_image_encoder
        self._set_trainable(freeze_image_encoder, train_mask_decoder)
        self.register_buffer('pixel_mean', torch.tensor(pixel_mean).view(3, 1, 1), False)
        self.register_buffer('pixel_std', torch.tensor(pixel_std).view(3, 1, 1), False)
        self.loss_focal = MODELS.build(loss_focal)
        self.loss_dice = MODELS.build(loss_dice)
        if getattr(self.loss_dice, 'activate', False):
            raise ValueError('loss_dice must be built with activate=False')
        self.match_costs = {**MASK_MATCH_COSTS, **match_costs}
        self.match_size = match_size
        self.mask_threshold = mask_threshold

    def _official_random_init(self) -> None:
        """Initialise SAM as the official code does when built without a checkpoint: PyTorch's
        default init of every layer (HF's tiny-std init makes a random SAM's masks ~0), zero
        position tables, a unit-scale random-Fourier position code."""
        with torch.no_grad():
            for module in self.sam.modules():
                if hasattr(module, 'reset_parameters'):
                    module.reset_parameters()
            gauss = torch.randn_like(self.sam.shared_image_embedding.positional_embedding)
            self.sam.shared_image_embedding.positional_embedding.copy_(gauss)
            self.sam.prompt_encoder.shared_embedding.positional_embedding.copy_(gauss)

    def _set_trainable(self, freeze_image_encoder: bool, train_mask_decoder: bool) -> None:
        self.sam.requires_grad_(False)
        if not freeze_image_encoder:
            self.sam.vision_encoder.requires_grad_(True)
        if train_mask_decoder:
            dec = self.sam.mask_decoder
            dec.requires_grad_(True)
            # Not on the path of the single (multimask_output=False) mask: keep them frozen.
            dec.iou_prediction_head.requires_grad_(False)
            for mlp in dec.output_hypernetworks_mlps[1:]:
                mlp.requires_grad_(False)

    def train(self, mode: bool = True) -> SamMaskUnitDecoder:
        """Set the mode; a frozen image encoder stays in eval mode."""
        super().train(mode)
        if self.freeze_image_encoder:
            self.sam.vision_encoder.eval()
        return self

    def init_weights(self) -> None:
        """Initialise the prompt MLP only; never re-initialise SAM (it may hold a checkpoint)."""
        if not self._is_init:
            for layer in self.text_proj:
                if isinstance(layer, nn.Linear):
                    nn.init.xavier_uniform_(layer.weight)
                    nn.init.zeros_(layer.bias)
        self._is_init = True

    # ------------------------------------------------------------------------------ encode
    @property
    def image_size(self) -> int:
        """SAM's input side (e.g. 1024)."""
        return int(self.sam.config.vision_config.image_size)

    def encode_images(self, batch_data_samples: SampleList, rows: Tensor) -> Tensor:
        """SAM image embeddings of the samples selected by ``rows``; zeros for the others.

        Args:
            batch_data_samples (list[RefVLMDataSample]): Samples with ``sam_image`` (3, S, S)
                uint8 where ``rows`` is True.
            rows (Tensor): (B,) bool, samples to encode.

        Returns:
            Tensor: (B, C, h, w) float, C = SAM prompt width, h = w = image side / patch.
        """
        cfg = self.sam.config.prompt_encoder_config
        dtype = self.text_proj[0].weight.dtype
        side = cfg.image_embedding_size
        out = torch.zeros(
            len(batch_data_samples), cfg.hidden_size, side, side, device=rows.device, dtype=dtype
        )
        inds = rows.nonzero()[:, 0].tolist()
        if not inds:
            return out
        images = []
        for b in inds:
            img = batch_data_samples[b].get('sam_image')
            if img is None:
                raise ValueError(
                    f'sample {batch_data_samples[b].metainfo.get("record_id")} has '
                    'mask queries but no sam_image; add PackSamImage (and a `sam` '
                    'size in PrepareImages) to the pipeline'
                )
            images.append(torch.as_tensor(img, device=rows.device))
        pixels = torch.stack(images).float()
        if pixels.shape[-1] != self.image_size:
            pixels = F.interpolate(
                pixels,
                size=(self.image_size, self.image_size),
                mode='bilinear',
                align_corners=False,
            )
        pixels = ((pixels - self.pixel_mean) / self.pixel_std).to(
            self.sam.vision_encoder.patch_embed.projection.weight.dtype
        )
        with torch.set_grad_enabled(not self.freeze_image_encoder and torch.is_grad_enabled()):
            emb = self.sam.vision_encoder(pixels)[0]
        out[inds] = emb.to(dtype)
        return out

    # ------------------------------------------------------------------------------ decode
    def forward(
        self, queries: UnitQueries, visual: VisualContext, image_embeddings: Tensor | None = None
    ) -> dict[str, Tensor]:
        """``mask_logits`` (B, Q, H_m, W_m) float for every slot (zeros on padding).

        Args:
            queries (UnitQueries): Routed ``<REF>`` states.
            visual (VisualContext): Unused (SAM has its own image encoder); gives B.
            image_embeddings (Tensor, optional): (B, C, h, w) from :meth:`encode_images`;
                None: zeros.
        """
        mask = queries.mask.bool()
        batch, slots = mask.shape
        dtype = self.text_proj[0].weight.dtype
        if not bool(mask.any()):
            # No query: decode one zero prompt on a zero image so that every trainable parameter
            # stays in the graph (0 x output), as the contract asks of zero-query batches.
            fake = self._decode(
                self.text_proj(queries.embeds.new_zeros(1, self.in_channels).to(dtype)), None
            )
            size = fake.shape[-2:]
            return dict(mask_logits=fake.new_zeros(batch, slots, *size) + fake.sum() * 0.0)
        if image_embeddings is not None:
            image_embeddings = image_embeddings[mask.nonzero()[:, 0]]
        logits = self._decode(self.text_proj(queries.embeds[mask].to(dtype)), image_embeddings)
        out = logits.new_zeros(batch, slots, *logits.shape[-2:])
        out[mask] = logits
        return dict(mask_logits=out)

    def _decode(self, sparse: Tensor, image_embeddings: Tensor | None) -> Tensor:
        """SAM mask decoder on M prompts: (M, C) sparse tokens, (M, C, h, w) image embeddings
        (None: zeros) -> (M, 4h, 4w) mask logits (single-mask output)."""
        cfg = self.sam.config.prompt_encoder_config
        side, num, dtype = cfg.image_embedding_size, sparse.shape[0], sparse.dtype
        if image_embeddings is None:
            image_embeddings = sparse.new_zeros(num, cfg.hidden_size, side, side)
        dense = self.sam.prompt_encoder.no_mask_embed.weight.reshape(1, -1, 1, 1).to(dtype)
        image_pe = self.sam.get_image_wide_positional_embeddings().to(dtype)
        logits, _ = self.sam.mask_decoder(
            image_embeddings=image_embeddings.to(dtype),
            image_positional_embeddings=image_pe.expand(num, -1, -1, -1),
            sparse_prompt_embeddings=sparse[:, None, None],
            dense_prompt_embeddings=dense.expand(num, -1, side, side),
            multimask_output=False,
        )
        return logits[:, 0, 0]

    def loss(
        self, queries: UnitQueries, visual: VisualContext, batch_data_samples: SampleList
    ) -> dict[str, Tensor]:
        """The two terms (named by :attr:`loss_keys`) against ``gt_units.mask.masks``; empty
        targets are allowed (trained towards an all-zero mask)."""
        mask = queries.mask.bool()
        num = int(mask.sum())
        embeds = self.encode_images(batch_data_samples, mask.any(1)) if num else None
        logits = self(queries, visual, embeds)['mask_logits']
        if num == 0:
            zero = logits.sum() * 0.0
            return dict.fromkeys(self.loss_keys, zero)
        pred = logits[mask].float()
        tgt = gather_unit_targets(batch_data_samples, self.unit, ['masks'], queries)['masks']
        tgt = tgt.float() > 0.5
        size = tgt.shape[-1]
        valid_hw = visual.valid_hw[:, None].expand(-1, mask.shape[1], -1)[mask]
        msize = min(self.match_size, size)
        small = F.adaptive_avg_pool2d(tgt.float()[:, None], msize)[:, 0] > 0.5
        pred_inds, tgt_inds = match_in_groups(
            mask_group_costs,
            resize_maps(pred, msize),
            small,
            flat_group_keys(queries.group_ids, mask),
            valid=valid_region_mask(valid_hw, msize, msize),
            **self.match_costs,
        )
        p = resize_maps(pred[pred_inds], size).flatten(1)
        t = tgt[tgt_inds].flatten(1).float()
        val = valid_region_mask(valid_hw[pred_inds], size, size).flatten(1).float()
        per_pixel = val / val.sum(1, keepdim=True).clamp(min=1)
        focal = self.loss_focal(p, t, weight=per_pixel, avg_factor=num)
        dice = self.loss_dice(p.sigmoid() * val, t * val, avg_factor=num)
        return dict(zip(self.loss_keys, (focal, dice), strict=True))

    @torch.no_grad()
    def predict(
        self,
        queries: UnitQueries,
        visual: VisualContext,
        batch_data_samples: SampleList,
        rescale: bool = True,
    ) -> list[InstanceData]:
        """One ``InstanceData(masks, scores)`` per sample (see the class docstring)."""
        mask = queries.mask.bool()
        embeds = self.encode_images(batch_data_samples, mask.any(1)) if mask.any() else None
        logits = self(queries, visual, embeds)['mask_logits'].float()
        results = []
        for sample, sel in zip(batch_data_samples, per_sample(logits, mask), strict=True):
            prob = (square_to_original(sel, sample) if rescale else sel).sigmoid()
            masks = prob > self.mask_threshold
            area = masks.flatten(1).sum(1)
            scores = (prob * masks).flatten(1).sum(1) / area.clamp(min=1)
            results.append(InstanceData(masks=masks, scores=scores))
        return results
