# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""Shared plumbing of the HF-backed vision encoders: building and freezing."""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import torch
from mmengine.model import BaseModule, initialize
from torch import nn

from mmrefvlm.models.llms import to_dtype


def build_hf_vision_model(
    model_cls_name: str,
    config_cls_name: str,
    *,
    name_or_path: str | None = None,
    config: Mapping | None = None,
    model: nn.Module | None = None,
    torch_dtype: str | torch.dtype | None = 'float32',
    load_weights: bool = True,
    attn_implementation: str | None = None,
    hf_config_overrides: Mapping | None = None,
) -> nn.Module:
    """Build one transformers vision model from exactly one of a folder, a config dict or a module.

    Args:
        model_cls_name (str): transformers class name, e.g. ``'CLIPVisionModel'``.
        config_cls_name (str): Its config class name, e.g. ``'CLIPVisionConfig'``.
        name_or_path (str, optional): Local folder (or hub name) for ``from_pretrained``. A folder
            holding a full model (e.g. a ``CLIPModel`` with its text tower) works: the extra
            weights are ignored. Any weight of this model missing from the checkpoint is an error.
        config (Mapping, optional): Config fields; the model gets random (HF default) weights.
        model (nn.Module, optional): An already built ``model_cls_name`` instance (cast to
            ``torch_dtype`` unless that is None; ``hf_config_overrides`` are refused).
        torch_dtype (str | torch.dtype, optional): Parameter dtype; None keeps the dtype as built.
        load_weights (bool): With ``name_or_path``, False reads only ``config.json`` and builds
            random weights (no weight download; meta-device counts).
        attn_implementation (str, optional): Passed to transformers (attention models only).
        hf_config_overrides (Mapping, optional): Config fields overriding the loaded ones.

    Returns:
        nn.Module: The transformers model.
    """
    import transformers

    given = [
        n
        for n, v in (('name_or_path', name_or_path), ('config', config), ('model', model))
        if v is not None
    ]
    if len(given) != 1:
        raise ValueError(
            f'{model_cls_name} needs exactly one of `name_or_path`, `config` and '
            f'`model`; got {given or "none"}'
        )
    model_cls = getattr(transformers, model_cls_name)
    config_cls = getattr(transformers, config_cls_name)
    dtype = to_dtype(torch_dtype)
    overrides = dict(hf_config_overrides or {})
    attn = {} if attn_implementation is None else {'attn_implementation': attn_implementation}
    if model is not None:
        if overrides:
            raise ValueError(f'hf_config_overrides {overrides} cannot apply to a built `model`')
        if not isinstance(model, model_cls):
            raise TypeError(f'`model` must be a transformers {model_cls_name}, got {type(model)}')
        return model if dtype is None else model.to(dtype)
    if config is not None:
        if not isinstance(config, Mapping):
            raise TypeError(
                f'`config` must be a dict of {config_cls_name} fields, got {type(config)}'
            )
        cfg = dict(config)
        model_type = cfg.pop('model_type', config_cls.model_type)
        if model_type != config_cls.model_type:
            raise ValueError(
                f'config model_type {model_type!r} does not match {config_cls_name} '
                f'({config_cls.model_type!r})'
            )
        hf_cfg = config_cls(**{**cfg, **overrides})
    elif not load_weights:
        hf_cfg = config_cls.from_pretrained(name_or_path, **overrides)
    else:
        built, info = model_cls.from_pretrained(
            name_or_path, dtype=dtype, output_loading_info=True, **attn, **overrides
        )
        if info['missing_keys']:
            missing = sorted(info['missing_keys'])
            raise ValueError(
                f'{name_or_path!r} lacks {len(missing)} weights of {model_cls_name} '
                f'(e.g. {missing[:5]}); refusing to run a vision encoder with random '
                'weights. Is it the right folder (converted checkpoint)?'
            )
        return built
    built = transformers.AutoModel.from_config(hf_cfg, **attn)
    if not isinstance(built, model_cls):
        raise TypeError(f'config built a {type(built).__name__}, expected {model_cls_name}')
    return built if dtype is None else built.to(dtype)


class HFVisionBackbone(BaseModule):
    """Base of the vision encoders: owns ``self.model`` (a transformers model) and freezing.

    Frozen (default) means: every parameter has ``requires_grad=False``; the module stays in eval
    mode even when a parent calls ``.train()`` (no dropout / drop-path, deterministic features);
    forward runs under ``torch.no_grad()``, so no activations are kept for backward and outputs
    have ``requires_grad=False`` (trainable modules after it still get their gradients). Not frozen,
    it trains like any module.

    ``init_weights`` never re-initialises the wrapped model: its weights come from
    ``from_pretrained`` or from transformers' init at construction. Only an explicit ``init_cfg``
    (e.g. ``dict(type='Pretrained', checkpoint=...)``) is applied.

    Args:
        frozen (bool): See above. Default True.
        mean (Sequence[float]): RGB normalisation mean in [0, 1] scale, exposed for the data
            preprocessor (the encoder itself expects already normalised pixels).
        std (Sequence[float]): RGB normalisation std in [0, 1] scale.
        init_cfg (dict | list[dict], optional): MMEngine init config.
        **build_kwargs: Passed to :func:`build_hf_vision_model` (``name_or_path`` / ``config`` /
            ``model``, ``torch_dtype``, ``load_weights``, ...).
    """

    _hf_model_cls: ClassVar[str]
    _hf_config_cls: ClassVar[str]
    _is_init: bool  # set by mmengine's BaseModule

    def __init__(
        self,
        *,
        frozen: bool = True,
        mean: Sequence[float],
        std: Sequence[float],
        init_cfg: dict | list[dict] | None = None,
        **build_kwargs: Any,
    ) -> None:
        super().__init__(init_cfg=init_cfg)
        self.model = build_hf_vision_model(self._hf_model_cls, self._hf_config_cls, **build_kwargs)
        if len(mean) != 3 or len(std) != 3:
            raise ValueError(f'mean and std need 3 values (RGB), got {mean!r} and {std!r}')
        self._mean = (float(mean[0]), float(mean[1]), float(mean[2]))
        self._std = (float(std[0]), float(std[1]), float(std[2]))
        self.frozen = bool(frozen)
        if self.frozen:
            self.model.requires_grad_(False)
        self.train(self.training)

    @property
    def mean(self) -> tuple[float, float, float]:
        """RGB normalisation mean in [0, 1] pixel scale (x255 for uint8 inputs)."""
        return self._mean

    @property
    def std(self) -> tuple[float, float, float]:
        """RGB normalisation std in [0, 1] pixel scale (x255 for uint8 inputs)."""
        return self._std

    @property
    def _model_config(self) -> Any:
        """The wrapped model's transformers config (``nn.Module`` does not declare ``config``)."""
        return self.model.config

    @property
    def dtype(self) -> torch.dtype:
        """Parameter dtype of the wrapped model (inputs are cast to it)."""
        return next(self.model.parameters()).dtype

    def train(self, mode: bool = True) -> HFVisionBackbone:
        """Set train/eval mode; a frozen encoder always stays in eval mode."""
        return super().train(mode and not self.frozen)

    def init_weights(self) -> None:
        """Apply ``init_cfg`` only; never call the wrapped model's own ``init_weights``."""
        if self.init_cfg and not self._is_init:
            cfgs = self.init_cfg if isinstance(self.init_cfg, list) else [self.init_cfg]
            initialize(self, cfgs)
        self._is_init = True

    def _grad_context(self) -> contextlib.AbstractContextManager:
        return torch.no_grad() if self.frozen else contextlib.nullcontext()
