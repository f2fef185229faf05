# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""Two extension points of ``RefVLM`` for methods that need more than image tokens in and
``<REF>`` states out (``docs/plugins.md`` §12): **input encoders**, whose outputs replace a
placeholder token of the prompt, and a **reference-state refiner**, which rewrites the hidden
states of the reference tokens before they are routed to the decoders. The core ships neither
kind; AnyRef (``projects/anyref``) implements both.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from torch import Tensor, nn

from mmrefvlm.structures import SampleList, VisualContext


class InputEncoder(Protocol):
    """Encodes extra inputs (another image, a box region, audio...) into LLM embeddings.

    ``RefVLM(input_encoders={'<tok>': encoder})`` calls it in ``embed_inputs`` once per batch and
    writes its rows, in order, over the positions of the placeholder token ``<tok>`` (a special
    token of the tokenizer; the data pipeline writes as many copies as the encoder returns rows
    for that sample). The inputs travel in the data samples (any field the plugin's transform
    sets).

    In training, a batch without any of its inputs must still return ``values`` that depend on
    every trainable parameter of the encoder (e.g. an output on a fake input sliced to zero rows):
    ``RefVLM`` adds ``0 * values.sum()`` to the loss so that the parameters stay in every step's
    graph (DDP without ``find_unused_parameters``).
    """

    def __call__(
        self,
        data_samples: SampleList,
        *,
        visual: VisualContext,
        vision_encoder: nn.Module,
        projector: nn.Module,
    ) -> tuple[Tensor, Tensor]:
        """Rows to write and their count per sample.

        Args:
            data_samples (list[RefVLMDataSample]): The batch.
            visual (VisualContext): The batch's encoder features (``clip`` (B, C, h, w)).
            vision_encoder (nn.Module): The model's CLIP-ViT (to encode another image).
            projector (nn.Module): The shared vision -> LLM projector.

        Returns:
            tuple: ``values`` (M, D) float in the LLM embedding space, ordered by sample then
            position, and ``counts`` (B,) long with ``counts.sum() == M``.
        """
        ...


@dataclass(frozen=True)
class RefStateContext:
    """What a reference-state refiner may need besides the hidden states.

    Attributes:
        answer_mask (Tensor): (B, L) bool over the hidden states' positions: True where the
            token is part of an answer (the labels mask in training; the generated tokens in
            prediction).
        key_mask (Tensor): (B, L_seq) bool, the keys the LLM attended to (no padding), in the
            positions of the LLM's own sequence (in prediction: the left-padded prompt, then every
            generated token).
        offset (int): Hidden-state index ``j`` is position ``j + offset`` of the LLM's sequence
            (0 in training; ``prompt length - 1`` in prediction, whose index 0 is the prompt's
            last state).
    """

    answer_mask: Tensor
    key_mask: Tensor
    offset: int


class RefStateRefiner(Protocol):
    """Rewrites the reference tokens' hidden states before routing (AnyRef's refocusing).

    ``RefVLM(ref_refiner=...)`` calls ``attach(llm)`` once after building the LLM (to hook into
    it), then, in ``loss`` / ``_forward`` / ``predict``, ``refiner(hidden, positions, context)``
    right before the router: ``hidden`` (B, L, D) are the last-layer states the router reads,
    ``positions`` the reference tokens of each sample (indices into ``hidden``, each reference
    once, as the ``ref_parser`` found them; the router reads the state at the position, or the
    one before with ``ref_position='emitting'``). It returns the states to route (same shape);
    the LM loss keeps the original states.
    """

    def attach(self, llm: nn.Module) -> None:
        """Hook into the (possibly PEFT-wrapped) HF causal LM."""
        ...

    def __call__(
        self, hidden: Tensor, positions: list[list[int]], context: RefStateContext
    ) -> Tensor:
        """The hidden states with the references' states rewritten."""
        ...
