# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""Small typed contracts between the parts of ``RefVLM`` (preprocessor -> model -> router ->
decoders)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor


@dataclass(frozen=True)
class MatchLayout:
    """Which real queries of a ``UnitQueries`` need the Hungarian solver, known on the host.

    Only phrase groups with two or more queries are solved; a group of one is matched to itself.
    The non-trivial groups are padded to ``(G, N)`` slots the way :func:`group_slots` does.

    Attributes:
        num_items (int): M, real queries of the unit in the batch.
        sizes (tuple[int, ...]): Size of each non-trivial group (G entries, each >= 2).
        num_slots (int): N = max(sizes) (0 without a non-trivial group).
        host_items (np.ndarray): (M',) int64, item index (into the M real queries) of each query
            of a non-trivial group, group by group, in query order inside a group.
        items (Tensor): (M',) long, ``host_items`` on the device.
        slot_inds (Tensor): (M',) long, flat slot ``g * N + rank`` of each of them (device).
        group_sizes (Tensor): (G,) long, ``sizes`` on the device.
    """

    num_items: int
    sizes: tuple[int, ...]
    num_slots: int
    host_items: np.ndarray
    items: Tensor
    slot_inds: Tensor
    group_sizes: Tensor


@dataclass(frozen=True)
class QueryLayout:
    """Host-known facts of a ``UnitQueries`` that decoders would otherwise read from the device.

    ``RefVLM`` plans the routing on the host, so it knows these before the hidden states exist;
    decoders that use them (``mmrefvlm.models.unit_decoders.utils``) run their loss without a
    device->host synchronisation.

    Attributes:
        counts (tuple[int, ...]): Real queries of each row (B entries).
        group_keys (np.ndarray): (M,) int64, batch-unique phrase-group key of each real query,
            in ``mask.nonzero()`` order (sample-major, slot order): ``row * stride + group_id``.
        index (Tensor): (M,) long, flat slot ``row * Q + slot`` of each real query (device).
        rows (Tensor): (M,) long, row of each real query (device).
        match (MatchLayout, optional): Grouped-matching layout of the real queries.
    """

    counts: tuple[int, ...]
    group_keys: np.ndarray
    index: Tensor
    rows: Tensor
    match: MatchLayout | None = None

    @property
    def num_items(self) -> int:
        """M, the number of real queries."""
        return sum(self.counts)

    @classmethod
    def empty(cls, rows: int, device: torch.device | str | None = None) -> QueryLayout:
        """The layout of ``rows`` rows without a real query (the fake input of a decoder)."""
        none = torch.zeros(0, dtype=torch.long, device=device)
        return cls((0,) * rows, np.zeros(0, dtype=np.int64), none, none)


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
        layout (QueryLayout, optional): The same facts known on the host (set by ``RefVLM`` in
            training; None when the queries were built otherwise: decoders then read ``mask``).
    """

    embeds: Tensor
    mask: Tensor
    group_ids: Tensor
    layout: QueryLayout | None = None

    @property
    def num_queries(self) -> int:
        """Number of real (unpadded) queries in the batch (from the layout when known)."""
        if self.layout is not None:
            return self.layout.num_items
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


@dataclass(frozen=True)
class HostBatch:
    """Host (numpy) copies of a batch's token data, made before the transfer to the device.

    ``RefVLMDataPreprocessor`` puts one in ``inputs['host']`` so that ``RefVLM`` plans a step
    (placeholder positions, labelled positions, routing) without reading the device.

    Attributes:
        input_ids (np.ndarray): (B, L) int64, padded as ``inputs['input_ids']``.
        labels (np.ndarray): (B, L) int64, -100 on ignored positions.
        lengths (np.ndarray): (B,) int64, real tokens of each sample.
        offsets (np.ndarray): (B,) int64, left padding of each sample (0 when padded right).
        has_image (np.ndarray): (B,) bool.
        prompt_counts (np.ndarray): (B,) int64, visual prompts of each sample.
    """

    input_ids: np.ndarray
    labels: np.ndarray
    lengths: np.ndarray
    offsets: np.ndarray
    has_image: np.ndarray
    prompt_counts: np.ndarray

    @property
    def batch_size(self) -> int:  # noqa: D102
        return int(self.input_ids.shape[0])

    @classmethod
    def from_inputs(cls, inputs: dict[str, Any]) -> HostBatch:
        """Read the facts back from the (device) inputs: the fallback when no preprocessor made
        one (this synchronises with the device)."""
        attn = inputs['attention_mask'].detach().cpu().numpy().astype(bool)
        bsz = attn.shape[0]
        lengths = attn.sum(1).astype(np.int64)
        offsets = np.where(lengths > 0, attn.argmax(1), 0).astype(np.int64)
        prompts = inputs['prompt_batch_idx'].detach().cpu().numpy()
        return cls(
            input_ids=inputs['input_ids'].detach().cpu().numpy().astype(np.int64),
            labels=inputs['labels'].detach().cpu().numpy().astype(np.int64),
            lengths=lengths,
            offsets=offsets,
            has_image=inputs['has_image'].detach().cpu().numpy().astype(bool),
            prompt_counts=np.bincount(prompts, minlength=bsz).astype(np.int64),
        )
