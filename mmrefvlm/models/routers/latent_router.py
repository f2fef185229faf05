# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""The latent-embedding router: every ``<REF>`` hidden state goes to the decoder of the unit named
in its own triplet (from label ids in training, from generated ids at inference)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from mmengine.model import BaseModule
from torch import Tensor

from mmrefvlm.registry import MODELS
from mmrefvlm.structures import UnitQueries
from mmrefvlm.tokenization import RefTokenizer
from mmrefvlm.trp import ParseResult, parse_token_ids

#: One parsed ``<REF>`` of :func:`find_refs`: ``(position, units, (answer, triplet, group), phrase,
#: phrase_span)``.
FoundRef = tuple[
    int, tuple[str, ...], tuple[int, int | None, int | None], str, tuple[int, int] | None
]


@dataclass(frozen=True)
class RoutedRef:
    """One ``<REF>`` after routing.

    Attributes:
        sample (int): Batch index.
        position (int): Index of the ``<REF>`` token in the sequence the hidden states cover.
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


def find_refs(
    token_ids: Tensor,
    tokenizer: RefTokenizer,
    *,
    known_units: set[str],
    span_mask: Tensor | None = None,
) -> tuple[list[FoundRef], list[str], list[ParseResult]]:
    """Parse one sample's answer tokens into ``(position, units, group_key, phrase)`` tuples.

    Args:
        token_ids (Tensor): (L,) long, the sample's sequence.
        tokenizer (RefTokenizer): For the special-token ids and unit-name text.
        known_units (set[str]): Units that have a decoder; others are dropped with a warning.
        span_mask (Tensor, optional): (L,) bool, which positions belong to answers (the labels
            mask in training). Consecutive answers are separated at EOS and parsed one by one.
            None: the whole sequence is one answer (generated tokens).

    Returns:
        tuple: refs as ``(position, units, (answer, triplet, group), phrase, phrase_span)``
        (``phrase_span``: sequence positions of ``<Phrase>`` and ``</Phrase>``, or None), warning
        strings, and the ``ParseResult`` of each answer.
    """
    if span_mask is None:
        positions = torch.arange(len(token_ids))
    else:
        positions = span_mask.nonzero(as_tuple=True)[0]
    ids = token_ids[positions].tolist()
    pos = positions.tolist()
    eos = tokenizer.ids.eos
    out: list[FoundRef] = []
    warnings: list[str] = []
    results: list[ParseResult] = []
    start, answer = 0, 0
    for end in [i for i, t in enumerate(ids) if t == eos] + [len(ids)]:
        if end > start:
            res = parse_token_ids(ids[start:end], tokenizer, known_units=known_units)
            results.append(res)
            warnings += [f'{w.code}: {w.message}' for w in res.warnings]
            for ref in res.refs:
                if not ref.units:
                    warnings.append(f'dropped <REF> at token {pos[start + ref.position]}: no unit')
                    continue
                span = (
                    None
                    if ref.phrase_span is None
                    else (pos[start + ref.phrase_span[0]], pos[start + ref.phrase_span[1]])
                )
                out.append(
                    (
                        pos[start + ref.position],
                        ref.units,
                        (answer, ref.triplet, ref.group),
                        ref.phrase,
                        span,
                    )
                )
            answer += 1
        start = end + 1
    return out, warnings, results


@MODELS.register_module()
class LatentEmbeddingRouter(BaseModule):
    """Packs ``<REF>`` hidden states per unit into padded ``UnitQueries``.

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
        self.phrase_pooling = phrase_pooling

    def forward(
        self,
        hidden: Tensor,
        refs: Sequence[Sequence[FoundRef]],
        capacities: Mapping[str, int],
        warnings: Sequence[Sequence[str]] | None = None,
    ) -> RoutingResult:
        """Route parsed refs.

        Args:
            hidden (Tensor): (B, L, D) last-layer hidden states.
            refs (Sequence): Per sample, ``find_refs`` tuples with positions indexing ``hidden``.
            capacities (Mapping[str, int]): Max queries per sample per unit (decoder capacity);
                extra refs are dropped with a warning.
            warnings (Sequence, optional): Per-sample warnings to extend.

        Returns:
            RoutingResult: queries per unit (padded slots masked, ``group_ids`` -1 there).
        """
        bsz = hidden.shape[0]
        shift = 1 if self.ref_position == 'emitting' else 0
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
        queries = {}
        for unit in sorted({r.unit for rs in routed for r in rs}):
            items = [r for rs in routed for r in rs if r.unit == unit]
            q = max(r.slot for r in items) + 1
            b_idx = torch.tensor([r.sample for r in items], device=hidden.device)
            s_idx = torch.tensor([r.slot for r in items], device=hidden.device)
            p_idx = torch.tensor([r.position for r in items], device=hidden.device)
            embeds = hidden.new_zeros(bsz, q, hidden.shape[-1])
            states = hidden[b_idx, p_idx]
            if self.phrase_pooling and spans:
                states = states + self._phrase_means(hidden, items, spans, shift)
            embeds = embeds.index_put((b_idx, s_idx), states)
            mask = torch.zeros(bsz, q, dtype=torch.bool, device=hidden.device)
            mask[b_idx, s_idx] = True
            gids = torch.full((bsz, q), -1, dtype=torch.long, device=hidden.device)
            gids[b_idx, s_idx] = torch.tensor([r.group_id for r in items], device=hidden.device)
            queries[unit] = UnitQueries(embeds=embeds, mask=mask, group_ids=gids)
        return RoutingResult(queries=queries, refs=routed, warnings=warns)

    @staticmethod
    def _phrase_means(
        hidden: Tensor,
        items: list[RoutedRef],
        spans: dict[tuple[int, int], tuple[int, int]],
        shift: int,
    ) -> Tensor:
        """(M, D) mean state of each routed ref's phrase tokens (zeros without a phrase), from one
        cumulative sum over the sequence (no per-ref loop over tokens)."""
        csum = torch.cat(
            [hidden.new_zeros(hidden.shape[0], 1, hidden.shape[-1]), hidden.float().cumsum(1)], 1
        )
        starts, ends, has = [], [], []
        for r in items:
            span = spans.get((r.sample, r.position + shift))
            has.append(span is not None)
            starts.append(span[0] + 1 if span else 0)
            ends.append(span[1] if span else 1)
        dev = hidden.device
        b = torch.tensor([r.sample for r in items], device=dev)
        s, e = torch.tensor(starts, device=dev), torch.tensor(ends, device=dev)
        mean = (csum[b, e] - csum[b, s]) / (e - s).clamp_min(1)[:, None]
        return (mean * torch.tensor(has, device=dev)[:, None]).to(hidden.dtype)
