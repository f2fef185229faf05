# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""The latent-embedding router: every ``<REF>`` hidden state goes to the decoder of the unit named
in its own triplet (from label ids in training, from generated ids at inference)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from mmengine.model import BaseModule
from torch import Tensor

from mmrefvlm.registry import MODELS
from mmrefvlm.structures import QueryLayout, UnitQueries
from mmrefvlm.trp import FoundRef, find_refs

from ..host_index import IndexPack
from ..matchers.batched import plan_match_layout

__all__ = [
    'LatentEmbeddingRouter',
    'RoutedRef',
    'RoutingResult',
    'RoutePlan',
    'UnitRoute',
    'find_refs',
    'FoundRef',
]


@dataclass(frozen=True)
class RoutedRef:
    """One ``<REF>`` after routing.

    Attributes:
        sample (int): Batch index.
        position (int): Index of the hidden state the router reads: the ``<REF>`` token's own
            with ``ref_position='ref'``, the one before (the state that emits it) with
            ``'emitting'`` (``position + router.shift`` is the ``<REF>`` token).
        unit (str): Decoder it goes to (a ``<REF>`` with several units appears once per unit).
        slot (int): Its query slot in that unit's ``UnitQueries`` of the sample.
        group_id (int): Phrase-group id within the sample (matching happens inside a group).
        phrase (str): Plain text of its phrase.
    """

    sample: int
    position: int
    unit: str
    slot: int
    group_id: int
    phrase: str


@dataclass
class RoutingResult:
    """Output of :meth:`LatentEmbeddingRouter.forward`.

    Attributes:
        queries (dict[str, UnitQueries]): Per unit with at least one ``<REF>`` in the batch.
        refs (list[list[RoutedRef]]): Per sample, in routing order.
        warnings (list[list[str]]): Per sample (dropped refs, capacity overflow, parse problems).
    """

    queries: dict[str, UnitQueries]
    refs: list[list[RoutedRef]]
    warnings: list[list[str]]


@dataclass
class UnitRoute:
    """Host-side routing of one unit's ``<REF>`` states (:meth:`LatentEmbeddingRouter.plan`).

    Attributes:
        rows (list[int]): Batch row of each row of the unit's ``UnitQueries`` (every row, or with
            ``select_rows`` only the rows that have queries of the unit).
        num_slots (int): Q, slots per row.
        counts (tuple[int, ...]): Real queries per row.
        group_keys (np.ndarray): (M,) int64, ``row * stride + group_id`` of each query.
        handles (dict[str, int]): ``IndexPack`` handles of the (M,) index arrays ``sample``
            (batch row), ``row``, ``slot``, ``position``, ``group``, ``flat`` (``row * Q + slot``)
            ``span_start``, ``span_end``, ``span_has`` (phrase pooling), and the (R,) array
            ``batch_rows`` (``rows``).
        match (Callable): Builds the unit's ``MatchLayout`` from the pack's device tensors.
    """

    rows: list[int]
    num_slots: int
    counts: tuple[int, ...]
    group_keys: np.ndarray
    handles: dict[str, int]
    match: Any


@dataclass
class RoutePlan:
    """Output of :meth:`LatentEmbeddingRouter.plan`: everything but the hidden states.

    Attributes:
        units (dict[str, UnitRoute]): Per unit with at least one ``<REF>``, sorted by name.
        refs (list[list[RoutedRef]]): Per sample, in routing order.
        warnings (list[list[str]]): Per sample.
        pooling (bool): Whether phrase means are added (pooling on and a phrase in the batch).
    """

    units: dict[str, UnitRoute]
    refs: list[list[RoutedRef]]
    warnings: list[list[str]]
    pooling: bool


@MODELS.register_module()
class LatentEmbeddingRouter(BaseModule):
    """Packs ``<REF>`` hidden states per unit into padded ``UnitQueries``.

    Routing is planned on the host (:meth:`plan`: which query slot each ``<REF>`` fills, from the
    parsed refs alone) and applied to the hidden states on the device (:meth:`pack`: index
    gathers, no device->host synchronisation); :meth:`forward` does both.

    Args:
        ref_position (str): ``'ref'`` (REF-VLM: the state at the ``<REF>`` position) or
            ``'emitting'`` (LISA/GSVA/AnyRef: the state at the position that emitted ``<REF>``).
        phrase_pooling (bool): Add the mean state of the triplet's phrase tokens (between
            ``<Phrase>`` and ``</Phrase>``, which TRP delimits explicitly) to each ``<REF>`` state.
            The ``<REF>`` state alone is trained by the LM loss to predict the next token, so a
            small LLM learns slowly to carry the phrase in it; pooling hands the decoders the
            phrase directly. Default False (REF-VLM).
    """

    def __init__(
        self,
        ref_position: str = 'ref',
        phrase_pooling: bool = False,
        init_cfg: dict[str, Any] | list[dict[str, Any]] | None = None,
    ) -> None:
        super().__init__(init_cfg=init_cfg)
        if ref_position not in ('ref', 'emitting'):
            raise ValueError(f"ref_position must be 'ref' or 'emitting', got {ref_position!r}")
        self.ref_position = ref_position
        self.shift = 1 if ref_position == 'emitting' else 0  # <REF> position - state read
        self.phrase_pooling = phrase_pooling

    def forward(
        self,
        hidden: Tensor,
        refs: Sequence[Sequence[FoundRef]],
        capacities: Mapping[str, int],
        warnings: Sequence[Sequence[str]] | None = None,
    ) -> RoutingResult:
        """Route parsed refs (:meth:`plan` then :meth:`pack`, every batch row kept).

        Args:
            hidden (Tensor): (B, L, D) last-layer hidden states.
            refs (Sequence): Per sample, ``find_refs`` tuples with positions indexing ``hidden``.
            capacities (Mapping[str, int]): Max queries per sample per unit (decoder capacity);
                extra refs are dropped with a warning.
            warnings (Sequence, optional): Per-sample warnings to extend.

        Returns:
            RoutingResult: queries per unit (padded slots masked, ``group_ids`` -1 there).
        """
        pack = IndexPack()
        plan = self.plan(refs, capacities, warnings, batch_size=hidden.shape[0], pack=pack)
        queries = self.pack(hidden, plan, pack.to(hidden.device))
        return RoutingResult(queries=queries, refs=plan.refs, warnings=plan.warnings)

    def plan(
        self,
        refs: Sequence[Sequence[FoundRef]],
        capacities: Mapping[str, int],
        warnings: Sequence[Sequence[str]] | None = None,
        *,
        batch_size: int,
        pack: IndexPack,
        select_rows: bool = False,
    ) -> RoutePlan:
        """Plan the routing on the host; the index arrays go in ``pack``.

        Args:
            refs (Sequence): Per sample, ``find_refs`` tuples (positions in the padded sequence).
            capacities (Mapping[str, int]): Max queries per sample per unit.
            warnings (Sequence, optional): Per-sample warnings to extend.
            batch_size (int): B.
            pack (IndexPack): Collects the index arrays for one host->device copy.
            select_rows (bool): Give each unit only the rows that have queries of it (a
                decoder's loss then runs on those samples only). Defaults to False.

        Returns:
            RoutePlan: The plan; :meth:`pack` applies it once ``pack`` is on the device.
        """
        routed, spans, warns = self._route(refs, capacities, warnings, batch_size)
        units = {}
        for unit in sorted({r.unit for rs in routed for r in rs}):
            items = [r for rs in routed for r in rs if r.unit == unit]
            units[unit] = self._plan_unit(items, spans, batch_size, select_rows, pack)
        return RoutePlan(units, routed, warns, bool(self.phrase_pooling and spans))

    def _route(
        self,
        refs: Sequence[Sequence[FoundRef]],
        capacities: Mapping[str, int],
        warnings: Sequence[Sequence[str]] | None,
        bsz: int,
    ) -> tuple[list[list[RoutedRef]], dict[tuple[int, int], tuple[int, int]], list[list[str]]]:
        """Slots and group ids of every ref (capacity overflow dropped with a warning)."""
        shift = self.shift
        warns = [list(w) for w in warnings] if warnings is not None else [[] for _ in range(bsz)]
        routed: list[list[RoutedRef]] = [[] for _ in range(bsz)]
        spans: dict[tuple[int, int], tuple[int, int]] = {}
        for b, sample_refs in enumerate(refs):
            group_ids: dict[tuple[int, int | None, int | None], int] = {}
            counts: dict[str, int] = {}
            for position, units, key, phrase, span in sample_refs:
                if span is not None and span[1] - span[0] > 1:
                    spans[(b, position)] = span
                gid = group_ids.setdefault(key, len(group_ids))
                for unit in units:
                    slot = counts.get(unit, 0)
                    if slot >= capacities[unit]:
                        warns[b].append(
                            f'<REF> at token {position} dropped: more than '
                            f'{capacities[unit]} {unit} queries (decoder capacity)'
                        )
                        continue
                    counts[unit] = slot + 1
                    routed[b].append(
                        RoutedRef(b, max(position - shift, 0), unit, slot, gid, phrase)
                    )
        return routed, spans, warns

    def _plan_unit(
        self,
        items: list[RoutedRef],
        spans: dict[tuple[int, int], tuple[int, int]],
        bsz: int,
        select_rows: bool,
        pack: IndexPack,
    ) -> UnitRoute:
        shift = self.shift
        sample = np.array([r.sample for r in items], dtype=np.int64)
        rows = sorted(set(sample.tolist())) if select_rows else list(range(bsz))
        row_of = np.full(bsz, -1, dtype=np.int64)
        row_of[rows] = np.arange(len(rows))
        row, slot = row_of[sample], np.array([r.slot for r in items], dtype=np.int64)
        group = np.array([r.group_id for r in items], dtype=np.int64)
        num_slots = int(slot.max()) + 1
        found = [spans.get((r.sample, r.position + shift)) for r in items]
        arrays = dict(
            sample=sample,
            row=row,
            slot=slot,
            position=[r.position for r in items],
            group=group,
            flat=row * num_slots + slot,
            span_start=[sp[0] + 1 if sp else 0 for sp in found],
            span_end=[sp[1] if sp else 1 for sp in found],
            span_has=[sp is not None for sp in found],
        )
        keys = row * (int(group.max()) + 1) + group
        handles = {k: pack.add(v) for k, v in arrays.items()}
        handles['batch_rows'] = pack.add(rows)
        return UnitRoute(
            rows=rows,
            num_slots=num_slots,
            counts=tuple(np.bincount(row, minlength=len(rows)).tolist()),
            group_keys=keys,
            handles=handles,
            match=plan_match_layout(keys, pack),
        )

    def pack(self, hidden: Tensor, plan: RoutePlan, dev: list[Tensor]) -> dict[str, UnitQueries]:
        """Apply a plan to the hidden states (device index ops only).

        Args:
            hidden (Tensor): (B, L, D) last-layer hidden states.
            plan (RoutePlan): From :meth:`plan`.
            dev (list[Tensor]): The plan's ``IndexPack`` on ``hidden``'s device.

        Returns:
            dict[str, UnitQueries]: Per unit, (R, Q) queries (R = ``len(route.rows)``) with their
            host :class:`QueryLayout`.
        """
        queries = {}
        for unit, route in plan.units.items():
            idx = {k: dev[h] for k, h in route.handles.items() if k != 'batch_rows'}
            rows, q = len(route.rows), route.num_slots
            states = hidden[idx['sample'], idx['position']]
            if plan.pooling:
                states = states + self._phrase_means(hidden, idx)
            embeds = hidden.new_zeros(rows, q, hidden.shape[-1])
            embeds = embeds.index_put((idx['row'], idx['slot']), states)
            flat = idx['flat']
            mask = torch.zeros(rows * q, dtype=torch.bool, device=hidden.device)
            mask = mask.index_fill(0, flat, True).view(rows, q)
            gids = torch.full((rows * q,), -1, dtype=torch.long, device=hidden.device)
            gids = gids.index_copy(0, flat, idx['group']).view(rows, q)
            layout = QueryLayout(
                route.counts, route.group_keys, flat, idx['row'], match=route.match(dev)
            )
            queries[unit] = UnitQueries(embeds=embeds, mask=mask, group_ids=gids, layout=layout)
        return queries

    @staticmethod
    def _phrase_means(hidden: Tensor, idx: dict[str, Tensor]) -> Tensor:
        """(M, D) mean state of each routed ref's phrase tokens (zeros without a phrase), from one
        cumulative sum over the sequence (no per-ref loop over tokens)."""
        csum = torch.cat(
            [hidden.new_zeros(hidden.shape[0], 1, hidden.shape[-1]), hidden.float().cumsum(1)], 1
        )
        b, s, e = idx['sample'], idx['span_start'], idx['span_end']
        mean = (csum[b, e] - csum[b, s]) / (e - s).clamp_min(1)[:, None]
        return (mean * idx['span_has'].bool()[:, None]).to(hidden.dtype)
