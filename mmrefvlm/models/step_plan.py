# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""The host-side plan of a ``RefVLM`` step: every index the step needs, from host data only.

``RefVLM`` computes, from the :class:`~mmrefvlm.structures.HostBatch` the data preprocessor made
before the transfer, where the ``<image>`` and ``[VPT]`` placeholders are, which positions the
LM loss reads, how the visual prompts group per image and whether any sequence is padded. The
index arrays go to the device in the step's single pinned, non-blocking copy
(:class:`~mmrefvlm.models.host_index.IndexPack`), so no placeholder count, label mask or prompt
layout is read back from the device.
"""

from __future__ import annotations

import numpy as np
from torch import Tensor

from mmrefvlm.models.refvlm_utils import IGNORE_INDEX
from mmrefvlm.structures import HostBatch

from .host_index import IndexPack
from .matchers import GroupSlots


class TokenPlan:
    """Placeholder positions, LM-loss positions and the prompt layout of a batch.

    Host attributes (numpy / Python): ``image_counts`` / ``vpt_counts`` ((B,) placeholders per
    sample), ``image_rows`` (rows with an image), ``all_images`` (bool), ``num_lm`` (labelled
    positions), ``has_padding`` (bool), ``prompt_counts`` ((B,)), ``num_prompt_slots``.
    Device attributes (after :meth:`bind`): ``image_pos`` / ``vpt_pos`` (flat positions
    ``b * L + t``, row-major), ``image_index`` (rows with an image), ``lm_index`` (flat positions
    ``b * L + t`` of the hidden states that predict a label), ``lm_targets`` (their labels) and
    ``prompt_slots`` (a :class:`GroupSlots` of the prompts per image).

    Args:
        host (HostBatch): The batch's host data.
        image_id (int): ``<image>`` token id.
        vpt_id (int): ``[VPT]`` token id.
        pack (IndexPack): Collects the index arrays for the step's copy.
    """

    def __init__(self, host: HostBatch, image_id: int, vpt_id: int, pack: IndexPack) -> None:
        ids, labels = host.input_ids, host.labels
        bsz, length = ids.shape
        self.batch_size, self.length = bsz, length
        flat = np.arange(bsz * length, dtype=np.int64).reshape(bsz, length)
        is_image, is_vpt = ids == image_id, ids == vpt_id
        self.image_counts = is_image.sum(1)
        self.vpt_counts = is_vpt.sum(1)
        self.image_rows = np.flatnonzero(host.has_image)
        self.all_images = bool(host.has_image.all())
        self.has_padding = bool((host.lengths < length).any())
        sel = labels[:, 1:] != IGNORE_INDEX
        rows, cols = np.nonzero(sel)
        self.num_lm = int(rows.size)
        self.prompt_counts = np.asarray(host.prompt_counts, dtype=np.int64)
        items, slots, sizes, keys = _prompt_layout(self.prompt_counts)
        self.num_prompt_slots = int(sizes.max()) if sizes.size else 0
        self._handles = [
            pack.add(flat[is_image]),
            pack.add(flat[is_vpt]),
            pack.add(self.image_rows),
            pack.add(rows * length + cols),
            pack.add(labels[rows, cols + 1]),
            pack.add(sizes),
            pack.add(slots[items]),
            pack.add(keys),
        ]

    def bind(self, dev: list[Tensor]) -> TokenPlan:
        """Attach the device tensors of the pack (``IndexPack.to``); returns self."""
        h = self._handles
        self.image_pos, self.vpt_pos, self.image_index = dev[h[0]], dev[h[1]], dev[h[2]]
        self.lm_index, self.lm_targets = dev[h[3]], dev[h[4]]
        self.prompt_slots = GroupSlots(dev[h[5]], dev[h[6]], self.num_prompt_slots, dev[h[7]])
        return self

    def check_counts(self, what: str, counts: np.ndarray, expected: np.ndarray) -> None:
        """Raise the error of a placeholder/visual-input mismatch (host data, no device read).

        Args:
            what (str): ``'<image>'`` or ``'[VPT]'``.
            counts (np.ndarray): (B,) placeholders per sample.
            expected (np.ndarray): (B,) visual tokens per sample.
        """
        if not np.array_equal(counts, expected):
            raise ValueError(
                f'{what}: the token sequences hold {counts.tolist()} placeholder tokens '
                f"per sample but the visual inputs give {expected.tolist()}; the pipeline's "
                'num_image_tokens / num_prompt_tokens must match the encoders'
            )


def _prompt_layout(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The :func:`group_slots` layout of ``prompt_batch_idx`` (prompts in sample order) from the
    per-sample counts: ``(items, slot_inds, sizes, keys)`` (items = arange(P))."""
    keys = np.flatnonzero(counts > 0).astype(np.int64)
    sizes = counts[keys].astype(np.int64)
    num_slots = int(sizes.max()) if sizes.size else 0
    group = np.repeat(np.arange(keys.size, dtype=np.int64), sizes)
    rank = np.arange(group.size, dtype=np.int64) - np.repeat(np.cumsum(sizes) - sizes, sizes)
    return np.arange(group.size), group * num_slots + rank, sizes, keys
