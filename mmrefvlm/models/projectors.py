# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""The vision-to-LLM projector, shared by image tokens and visual-prompt tokens."""

from __future__ import annotations

from mmengine.model import BaseModule
from torch import Tensor, nn

from mmrefvlm.registry import MODELS


@MODELS.register_module()
class MLPProjector(BaseModule):
    """Linear–GELU–Linear (``depth`` Linear layers, GELU between), LLaVA / REF-VLM style.

    Args:
        in_channels (int): Vision feature width (e.g. 1024 for CLIP-L).
        out_channels (int): LLM hidden size.
        depth (int): Number of Linear layers. Default 2.
    """

    def __init__(self, in_channels: int, out_channels: int, depth: int = 2, init_cfg=None) -> None:
        super().__init__(init_cfg=init_cfg)
        if depth < 1:
            raise ValueError(f'projector depth must be >= 1, got {depth}')
        layers: list[nn.Module] = [nn.Linear(in_channels, out_channels)]
        for _ in range(depth - 1):
            layers += [nn.GELU(), nn.Linear(out_channels, out_channels)]
        self.layers = nn.Sequential(*layers)
        self.in_channels, self.out_channels = in_channels, out_channels

    def forward(self, x: Tensor) -> Tensor:
        """(..., in_channels) -> (..., out_channels)."""
        return self.layers(x)
