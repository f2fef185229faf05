# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""CLIP-ConvNeXt pyramid: the multi-scale stage outputs the unit decoders read."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn

from mmrefvlm.registry import MODELS

from .base import HFVisionBackbone
from .presets import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD


@MODELS.register_module()
class ConvNeXtPyramid(HFVisionBackbone):
    """HF ``ConvNextModel`` returning the output of every stage, finest first.

    REF-VLM runs the LAION CLIP-ConvNeXt-L trunk at 512 px: (B, 192, 128, 128), (B, 384, 64, 64),
    (B, 768, 32, 32), (B, 1536, 16, 16). open_clip checkpoints are converted to the HF layout with
    ``tools/model_converters/open_clip_convnext_to_hf.py`` (see :mod:`.convert`).

    The stage outputs are taken from HF ``hidden_states`` with ``output_hidden_states=True``: in
    transformers 5.x that tuple is ``(stem output, stage 1, ..., stage N)`` (the stem entry, same
    resolution as stage 1, is dropped). The final pooled LayerNorm of ``ConvNextModel`` is unused.

    Args:
        name_or_path (str, optional): Local folder with a ``ConvNextModel`` (``config.json`` +
            weights), e.g. the converter's output.
        config (Mapping, optional): ``ConvNextConfig`` fields for a randomly initialised model,
            e.g. :data:`~mmrefvlm.models.vision.presets.TINY_CONVNEXT`.
        model (nn.Module, optional): A built ``ConvNextModel``. Exactly one of the three.
        frozen (bool): Freeze (no grad, always eval, ``no_grad`` forward). Default True.
        torch_dtype (str | torch.dtype, optional): Parameter dtype. Default ``'float32'``.
        load_weights (bool): With ``name_or_path``, False builds random weights from its config.
        hf_config_overrides (Mapping, optional): Config fields to override.
        mean (Sequence[float]): RGB mean in [0, 1] scale. Default OpenAI CLIP (LAION CLIP-ConvNeXt).
        std (Sequence[float]): RGB std in [0, 1] scale. Default OpenAI CLIP.
        init_cfg (dict | list[dict], optional): MMEngine init config.
    """

    _hf_model_cls = 'ConvNextModel'
    _hf_config_cls = 'ConvNextConfig'

    def __init__(
        self,
        name_or_path: str | None = None,
        *,
        config: Mapping | None = None,
        model: nn.Module | None = None,
        frozen: bool = True,
        torch_dtype: str | torch.dtype | None = 'float32',
        load_weights: bool = True,
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
            hf_config_overrides=hf_config_overrides,
            mean=mean,
            std=std,
            init_cfg=init_cfg,
        )
        # The pooled-output LayerNorm never touches the stage maps: frozen so that a trained
        # pyramid has no parameter without a gradient (DDP, find_unused_parameters=False).
        pooled_norm = getattr(self.model, 'layernorm', None)
        if pooled_norm is not None:
            pooled_norm.requires_grad_(False)

    @property
    def num_levels(self) -> int:
        """Number of stages (pyramid levels)."""
        return len(self._model_config.depths)

    @property
    def out_channels(self) -> list[int]:
        """Channels of each level, finest first."""
        return list(self._model_config.hidden_sizes)

    @property
    def strides(self) -> list[int]:
        """Downsampling factor of each level w.r.t. the input (patch stem, then x2 per stage)."""
        return [self._model_config.patch_size * 2**i for i in range(self.num_levels)]

    @property
    def image_size(self) -> int:
        """Input side the encoder is configured for (512 for REF-VLM)."""
        return self._model_config.image_size

    def forward(self, pixel_values: Tensor) -> tuple[Tensor, ...]:
        """Encode normalised images into a feature pyramid.

        Args:
            pixel_values (Tensor): (B, 3, H, W) float, normalised with :attr:`mean` / :attr:`std`
                (H = W = :attr:`image_size` in REF-VLM; sizes that are not multiples of the
                coarsest stride are floored by the strided convs). Cast to the model dtype.

        Returns:
            tuple[Tensor, ...]: ``num_levels`` maps (B, C_l, H / s_l, W / s_l) in the model dtype,
            finest first, with ``C_l = out_channels[l]`` and ``s_l = strides[l]``.
        """
        with self._grad_context():
            out = self.model(pixel_values=pixel_values.to(self.dtype), output_hidden_states=True)
        return tuple(out.hidden_states[1:])
