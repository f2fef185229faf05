# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""CLIP-ViT image encoder: the grid of patch features that becomes the LLM's image tokens."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from mmrefvlm.registry import MODELS

from .base import HFVisionBackbone
from .presets import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD


@MODELS.register_module()
class CLIPViTEncoder(HFVisionBackbone):
    """HF ``CLIPVisionModel`` returning one layer's patch features as a grid (CLS dropped).

    REF-VLM uses CLIP ViT-L/14-336 with ``select_layer=-2`` (the penultimate layer, as LLaVA):
    a 336 px image gives a (B, 1024, 24, 24) map, i.e. 576 tokens of width 1024.

    Args:
        name_or_path (str, optional): Local folder with a ``CLIPVisionModel`` or a full
            ``CLIPModel`` (e.g. ``openai/clip-vit-large-patch14-336``; the text tower is ignored).
        config (Mapping, optional): ``CLIPVisionConfig`` fields for a randomly initialised model,
            e.g. :data:`~mmrefvlm.models.vision.presets.TINY_CLIP_VIT`.
        model (nn.Module, optional): A built ``CLIPVisionModel``. Exactly one of the three.
        select_layer (int): Index into HF ``hidden_states`` (``num_hidden_layers + 1`` entries,
            entry 0 = embeddings after the pre-LayerNorm). Default -2.
        frozen (bool): Freeze (no grad, always eval, ``no_grad`` forward). Default True.
        torch_dtype (str | torch.dtype, optional): Parameter dtype. Default ``'float32'``.
        load_weights (bool): With ``name_or_path``, False builds random weights from its config.
        attn_implementation (str, optional): ``'sdpa'`` (default), ``'eager'``, ...
        hf_config_overrides (Mapping, optional): Config fields to override.
        mean (Sequence[float]): RGB mean in [0, 1] scale. Default OpenAI CLIP.
        std (Sequence[float]): RGB std in [0, 1] scale. Default OpenAI CLIP.
        init_cfg (dict | list[dict], optional): MMEngine init config.
    """

    _hf_model_cls = 'CLIPVisionModel'
    _hf_config_cls = 'CLIPVisionConfig'

    def __init__(
        self,
        name_or_path: str | None = None,
        *,
        config: Mapping | None = None,
        model: nn.Module | None = None,
        select_layer: int = -2,
        frozen: bool = True,
        torch_dtype: str | torch.dtype | None = 'float32',
        load_weights: bool = True,
        attn_implementation: str | None = 'sdpa',
        hf_config_overrides: Mapping | None = None,
        mean: Sequence[float] = OPENAI_CLIP_MEAN,
        std: Sequence[float] = OPENAI_CLIP_STD,
        init_cfg: dict | list[dict] | None = None,
    ) -> None:
        super().__init__(
            name_or_path=name_or_path,
            config=config,
            model=model,
            frozen=frozen,
            torch_dtype=torch_dtype,
            load_weights=load_weights,
            attn_implementation=attn_implementation,
            hf_config_overrides=hf_config_overrides,
            mean=mean,
            std=std,
            init_cfg=init_cfg,
        )
        num_states = self._model_config.num_hidden_layers + 1
        if not -num_states <= select_layer < num_states:
            raise ValueError(
                f'select_layer={select_layer} is out of range for '
                f'{num_states} hidden states (num_hidden_layers + 1)'
            )
        self.select_layer = select_layer
        self._freeze_unused_layers(select_layer % num_states)
        if self.image_size % self._model_config.patch_size:
            raise ValueError(
                f'image_size {self.image_size} is not a multiple of patch_size '
                f'{self._model_config.patch_size}'
            )

    @property
    def out_channels(self) -> int:
        """Feature width C (the CLIP hidden size)."""
        return self._model_config.hidden_size

    @property
    def image_size(self) -> int:
        """Input side S the position embeddings are built for."""
        return self._model_config.image_size

    @property
    def grid_size(self) -> int:
        """Side of the patch grid, ``S // patch_size``."""
        return self.image_size // self._model_config.patch_size

    @property
    def num_tokens(self) -> int:
        """Number of patch tokens per image (``grid_size ** 2``; CLS excluded)."""
        return self.grid_size**2

    def _freeze_unused_layers(self, keep: int) -> None:
        """Freeze the layers after ``select_layer`` and the pooled-output LayerNorm.

        They never influence the selected features, so when the encoder is trained they would be
        parameters without gradients (DDP with ``find_unused_parameters=False`` forbids those).
        They stay in the module so checkpoints and ``save_pretrained`` keep the HF layout.
        """
        # transformers 5 flattened it; typed Any: the HF submodules are not declared on nn.Module
        vm: Any = getattr(self.model, 'vision_model', self.model)
        for layer in vm.encoder.layers[keep:]:
            layer.requires_grad_(False)
        vm.post_layernorm.requires_grad_(False)

    def forward(self, pixel_values: Tensor) -> Tensor:
        """Encode normalised images.

        Args:
            pixel_values (Tensor): (B, 3, S, S) float, normalised with :attr:`mean` /
                :attr:`std`, ``S == image_size``. Cast to the model dtype.

        Returns:
            Tensor: (B, C, h, w) in the model dtype, ``h == w == grid_size``: patch tokens of
            ``select_layer`` in row-major order (``out.flatten(2).transpose(1, 2)`` gives the
            (B, h*w, C) token sequence back without a copy).
        """
        with self._grad_context():
            out = self.model(
                pixel_values=pixel_values.to(self.dtype), output_hidden_states=[self.select_layer]
            )
        tokens = out.hidden_states[self.select_layer][:, 1:]
        b, _, c = tokens.shape
        return tokens.transpose(1, 2).reshape(b, c, self.grid_size, self.grid_size)
