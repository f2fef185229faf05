# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""The contract every visual-unit decoder (core or plugin) implements."""

from __future__ import annotations

from abc import ABCMeta, abstractmethod
from typing import TYPE_CHECKING, Any, ClassVar

from mmengine.model import BaseModule
from mmengine.structures import InstanceData
from torch import Tensor

from mmrefvlm.structures import SampleList, UnitQueries, VisualContext

if TYPE_CHECKING:
    from mmrefvlm.models.matchers.batched import MatchRequest


class BaseVisualUnitDecoder(BaseModule, metaclass=ABCMeta):
    """Decodes routed ``<REF>`` states into one kind of visual unit.

    The unit name (class attribute ``unit``) is the only join key between the text
    (``<Unit>box</Unit>``), the router, ``RefVLM(unit_decoders=dict(box=...))``,
    ``data_sample.gt_units.box``, the loss-key prefix ``loss_box*`` and the metric prefix.
    Nothing in the core enumerates units.

    Contract:
      * ``forward`` is pure tensor compute on all B x Q slots (no targets, no data samples). Padded
        slots (``queries.mask == False``) must not influence real slots (mask them out of
        attention). The returned tensors must depend on every trainable parameter.
      * ``loss`` with **zero real queries** (``queries.mask`` all False) must not read targets and
        must return its usual keys with values ``0 * outputs``: ``RefVLM`` calls it on a one-slot
        fake input when a batch has no ``<REF>`` of this unit, which keeps every parameter in the
        graph on every rank (DDP-safe with ``find_unused_parameters=False``) and every loss key in
        every step's log.
      * ``loss`` with real queries reads ``data_sample.gt_units.<unit>`` (entries aligned with the
        sample's queries in order), matches predictions to targets inside each phrase group
        (``queries.group_ids``) with :func:`mmrefvlm.models.matchers.match_in_groups` (built on
        ``grouped_assignment``), and returns a dict whose keys all start with ``f'loss_{unit}'``
        (unweighted; ``RefVLM`` applies the unit weight).
      * ``predict`` returns one ``InstanceData`` per sample, with as many entries as the sample has
        real queries, in query order; coordinates in original-image pixels when ``rescale=True``
        (from metainfo ``square_size``; the image sits at the top-left of the square frame), else
        normalised to the square frame. It always sets ``scores`` ((N,) float).

    Optional two-phase loss (batched matching, one device->host transfer per step for all
    decoders): ``loss_costs`` computes the outputs, gathers the targets and returns a
    :class:`~mmrefvlm.models.matchers.MatchRequest` with the cost matrices of the non-trivial
    phrase groups, without reading the device; ``loss_assigned`` turns the request and the solved
    assignment into the same losses ``loss`` returns. ``RefVLM`` solves the requests of all
    decoders together (:func:`~mmrefvlm.models.matchers.solve_assignments`); a decoder that does
    not implement them is called through ``loss``. A decoder implementing both can write ``loss``
    as ``return two_phase_loss(self, queries, visual, batch_data_samples)``.

    Args:
        in_channels (int): Width of the routed ``<REF>`` states (the LLM hidden size).
        num_queries (int): Capacity: the most queries of this unit one sample may carry. The router
            truncates beyond it with a warning in the prediction.
        init_cfg (dict | list[dict], optional): MMEngine initialisation config.
    """

    unit: ClassVar[str]
    #: ``(old, new)`` parameter-name prefixes of earlier layouts, renamed when a checkpoint loads
    #: (effective after :func:`~.detr.register_legacy_keys` in the constructor).
    legacy_keys: ClassVar[tuple[tuple[str, str], ...]] = ()

    def __init__(
        self,
        in_channels: int,
        *,
        num_queries: int = 100,
        init_cfg: dict[str, Any] | list[dict[str, Any]] | None = None,
    ) -> None:
        super().__init__(init_cfg=init_cfg)
        if not isinstance(getattr(type(self), 'unit', None), str) or not type(self).unit:
            raise TypeError(f'{type(self).__name__} must define a non-empty class attribute `unit`')
        if in_channels <= 0 or num_queries <= 0:
            raise ValueError(
                f'in_channels and num_queries must be positive, got {in_channels}, {num_queries}'
            )
        self.in_channels = in_channels
        self.num_queries = num_queries

    @abstractmethod
    def forward(self, queries: UnitQueries, visual: VisualContext) -> dict[str, Tensor]:
        """Raw predictions for every slot, e.g. ``dict(boxes=(B, Q, 4))``."""

    @abstractmethod
    def loss(
        self, queries: UnitQueries, visual: VisualContext, batch_data_samples: SampleList
    ) -> dict[str, Tensor]:
        """Losses (keys ``loss_<unit>*``) against ``gt_units.<unit>`` with grouped matching."""

    def loss_costs(
        self, queries: UnitQueries, visual: VisualContext, batch_data_samples: SampleList
    ) -> MatchRequest:
        """Phase 1 of the two-phase loss (optional): outputs, targets and the costs of the
        non-trivial groups, as a ``MatchRequest``; must not synchronise when ``queries.layout``
        is set."""
        raise NotImplementedError(f'{type(self).__name__} has no two-phase loss')

    def loss_assigned(self, request: MatchRequest, tgt_inds: Tensor | None) -> dict[str, Tensor]:
        """Phase 2 (optional): the losses of ``loss`` from a ``loss_costs`` request and the target
        index of each real query (``tgt_inds`` (M,) long, or None for the identity)."""
        raise NotImplementedError(f'{type(self).__name__} has no two-phase loss')

    @abstractmethod
    def predict(
        self,
        queries: UnitQueries,
        visual: VisualContext,
        batch_data_samples: SampleList,
        rescale: bool = True,
    ) -> list[InstanceData]:
        """Per-sample predictions (``InstanceData`` with ``scores`` and the unit's fields)."""


def has_two_phase_loss(decoder: Any) -> bool:
    """Whether ``decoder`` implements ``loss_costs`` and ``loss_assigned``."""
    cls = type(decoder)
    base = BaseVisualUnitDecoder
    return (
        getattr(cls, 'loss_costs', base.loss_costs) is not base.loss_costs
        and getattr(cls, 'loss_assigned', base.loss_assigned) is not base.loss_assigned
    )


def two_phase_loss(
    decoder: Any, queries: UnitQueries, visual: VisualContext, batch_data_samples: SampleList
) -> dict[str, Tensor]:
    """``loss`` of a decoder with a two-phase loss, on its own (one solve for this decoder)."""
    from mmrefvlm.models.matchers.batched import solve_assignments

    request = decoder.loss_costs(queries, visual, batch_data_samples)
    return decoder.loss_assigned(request, solve_assignments([request])[0])
