# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""Small typed contracts between the parts of ``RefVLM`` (router -> decoders)."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor


@dataclass(frozen=True)
class UnitQueries:
    """The ``<REF>`` hidden states routed to one decoder, padded per sample.

    Attributes:
        embeds (Tensor): (B, Q, D) float, LLM last-layer states at this unit's ``<REF>`` tokens, in
            token order; padded slots are zeros.
        mask (Tensor): (B, Q) bool, True for real queries. Padded slots must be excluded from
            attention and loss by every decoder.
        group_ids (Tensor): (B, Q) long, phrase-group (triplet) index of each query within its
            sample, -1 on padding. Targets are matched only inside a group.
    """

    embeds: Tensor
    mask: Tensor
    group_ids: Tensor

    @property
    def num_queries(self) -> int:
        """Number of real (unpadded) queries in the batch."""
        return int(self.mask.sum())


@dataclass(frozen=True)
class VisualContext:
    """Visual features shared by all decoders.

    Attributes:
        pyramid (tuple[Tensor, ...]): Multi-scale maps (B, C_l, H_l, W_l), finest first (the
            CLIP-ConvNeXt stages); all cover the same S x S square frame.
        clip (Tensor): (B, C, h, w) the CLIP-ViT grid features (penultimate layer, CLS dropped).
        valid_hw (Tensor): (B, 2) float in (0, 1]: the fraction of the square frame's height and
            width that holds image pixels (the rest is right/bottom padding), for losses restricted
            to valid pixels.
    """

    pyramid: tuple[Tensor, ...]
    clip: Tensor
    valid_hw: Tensor

    @property
    def batch_size(self) -> int:  # noqa: D102
        return self.clip.shape[0]
