# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""Pieces of ``RefVLM.loss`` that keep the step free of device->host synchronisations.

* :func:`label_refs`: the ``<REF>`` tokens of the labels, from the data samples' ``label_refs``
  (parsed once by the pipeline) or parsed from the host copy of the labels.
* :func:`llm_attention_mask`: the attention mask handed to the LLM, built so that the HF mask
  code does not read the padding mask back from the device.
* :func:`decoder_losses`: every decoder's loss, with the grouped Hungarian matching of all
  decoders solved after one device->host transfer (:func:`solve_assignments`); decoders without
  the two-phase API (``has_two_phase_loss``) are called through their own ``loss``; decoders
  without a ``<REF>`` in the batch run on a fake input.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from mmrefvlm.models.refvlm_utils import IGNORE_INDEX
from mmrefvlm.structures import HostBatch, QueryLayout, SampleList, UnitQueries, VisualContext
from mmrefvlm.trp import FoundRef, find_refs, keep_units

from .matchers import solve_assignments
from .routers import RoutePlan
from .unit_decoders.base import has_two_phase_loss


def label_refs(
    host: HostBatch,
    samples: SampleList | None,
    tokenizer: Any,
    known_units: set[str],
    parser: Callable[..., tuple] = find_refs,
) -> list[list[FoundRef]]:
    """The ``<REF>`` tokens of each sample's labels, positions in the padded batch.

    A sample's ``label_refs`` (pipeline, unpadded positions) is filtered to ``known_units`` and
    shifted by its left padding; without it the host labels are parsed (same refs).

    Args:
        host (HostBatch): Host token data of the batch.
        samples (list[RefVLMDataSample], optional): The batch's data samples (None: parse every
            sample's labels).
        tokenizer (RefTokenizer): For parsing.
        known_units (set[str]): Units with a decoder.
        parser (Callable): Parses labels without ``label_refs``: the model's ``ref_parser``
            (:func:`~mmrefvlm.trp.find_refs` for TRP answers).

    Returns:
        list[list[FoundRef]]: Per sample.
    """
    out = []
    for b in range(host.batch_size):
        sample = samples[b] if samples is not None else None
        refs = sample.get('label_refs') if sample is not None and 'label_refs' in sample else None
        if refs is None:
            span = host.labels[b] != IGNORE_INDEX
            out.append(
                parser(host.input_ids[b], tokenizer, known_units=known_units, span_mask=span)[0]
            )
            continue
        off = int(host.offsets[b])
        out.append(
            [
                (pos + off, units, key, phrase, None if sp is None else (sp[0] + off, sp[1] + off))
                for pos, units, key, phrase, sp in keep_units(refs, known_units)
            ]
        )
    return out


def check_alignment(route: RoutePlan, samples: SampleList) -> None:
    """Every sample has as many ``gt_units.<unit>`` targets as routed ``<REF>`` of the unit
    (host data only)."""
    for unit, unit_route in route.units.items():
        counts = dict(zip(unit_route.rows, unit_route.counts, strict=True))
        for b, sample in enumerate(samples):
            gt = sample.gt_units.get(unit) if 'gt_units' in sample else None
            n, m = counts.get(b, 0), 0 if gt is None else len(gt)
            if n != m:
                raise ValueError(
                    f'sample {sample.metainfo.get("record_id")}: {n} <REF> tokens of unit '
                    f'{unit!r} in the labels but {m} targets; the data pipeline and '
                    'the tokenized answer disagree'
                )


def llm_attention_mask(llm: nn.Module, embeds: Tensor, mask: Tensor, has_padding: bool):
    """The attention mask for the LLM's decoder stack, decided on the host.

    Without padding (known on the host) the causal mask alone is needed: None. With padding, HF's
    mask code would check ``mask.all()`` on the device (a synchronisation) before building the 4-D
    mask, so for the ``sdpa`` and ``eager`` attention of causal models without sliding windows the
    4-D mask is built here, as HF builds it (``sdpa``: bool, True = attend; ``eager``: 0 /
    dtype-min). Other attention implementations and layer types get the 2-D mask as before.

    Args:
        llm (nn.Module): HF causal LM (optionally PEFT-wrapped).
        embeds (Tensor): (B, L, D) input embeddings.
        mask (Tensor): (B, L) 1 on real tokens.
        has_padding (bool): Whether any sample is padded.

    Returns:
        Tensor | None: What to pass as ``attention_mask``: None, (B, 1, L, L) or (B, L).
    """
    if not has_padding:
        return None
    config: Any = getattr(llm, 'config', None)
    impl = getattr(config, '_attn_implementation', None)
    layer_types = getattr(config, 'layer_types', None) or ['full_attention']
    windowed = getattr(config, 'sliding_window', None) is not None and getattr(
        config, 'use_sliding_window', True
    )
    causal = getattr(config, 'is_causal', True)
    if impl not in ('sdpa', 'eager') or windowed or not causal:
        return mask
    if any(t != 'full_attention' for t in layer_types):
        return mask
    pos = torch.arange(mask.shape[1], device=mask.device)
    allowed = (pos[None, :] <= pos[:, None])[None, None] & mask.bool()[:, None, None, :]
    if impl == 'sdpa':
        return allowed
    zero = torch.zeros((), device=mask.device, dtype=embeds.dtype)
    return torch.where(allowed, zero, torch.finfo(embeds.dtype).min)


def fake_inputs(hidden: Tensor, vis: VisualContext) -> tuple[UnitQueries, VisualContext]:
    """One padded query on the first image: a decoder's input when its unit has no ``<REF>``.

    The decoder's loss with zero real queries returns its usual keys as 0 x outputs, so every
    parameter is in the graph (DDP-safe) and every step logs the same loss keys; the layout tells
    the decoder, without a device read, that there is no real query.
    """
    fake = UnitQueries(
        embeds=hidden[:1, :1] * 0.0,
        mask=torch.zeros(1, 1, dtype=torch.bool, device=hidden.device),
        group_ids=torch.full((1, 1), -1, dtype=torch.long, device=hidden.device),
        layout=QueryLayout.empty(1, hidden.device),
    )
    vis1 = VisualContext(
        pyramid=tuple(p[:1] for p in vis.pyramid), clip=vis.clip[:1], valid_hw=vis.valid_hw[:1]
    )
    return fake, vis1


def _rows(vis: VisualContext, rows: Tensor) -> VisualContext:
    return VisualContext(
        pyramid=tuple(p.index_select(0, rows) for p in vis.pyramid),
        clip=vis.clip.index_select(0, rows),
        valid_hw=vis.valid_hw.index_select(0, rows),
    )


def decoder_losses(
    decoders: Mapping[str, Any],
    weights: Mapping[str, float],
    queries: Mapping[str, UnitQueries],
    route: RoutePlan,
    dev: list[Tensor],
    hidden: Tensor,
    vis: VisualContext,
    samples: SampleList,
) -> dict[str, Tensor]:
    """Weighted losses of every decoder, matching solved for all of them at once.

    Args:
        decoders (Mapping[str, BaseVisualUnitDecoder]): Unit -> decoder (any ``nn.Module``
            with the decoder contract).
        weights (Mapping[str, float]): Unit -> loss weight.
        queries (Mapping[str, UnitQueries]): From ``router.pack`` (rows with queries only).
        route (RoutePlan): The routing plan (``select_rows=True``).
        dev (list[Tensor]): The plan's index pack on the device.
        hidden (Tensor): (B, L, D) hidden states (for the fake inputs).
        vis (VisualContext): Visual features of the batch.
        samples (list[RefVLMDataSample], optional): The batch's data samples (None: parse every
            sample's labels).

    Returns:
        dict[str, Tensor]: Loss keys of every decoder, in decoder order.
    """
    per_unit: dict[str, dict[str, Tensor]] = {}
    requests: dict[str, Any] = {}
    for unit, dec in decoders.items():
        q = queries.get(unit)
        if q is None:
            fake, vis1 = fake_inputs(hidden, vis)
            per_unit[unit] = {k: v * 0.0 for k, v in dec.loss(fake, vis1, samples[:1]).items()}
            continue
        rows = route.units[unit].rows
        if len(rows) == len(samples):
            unit_vis, unit_samples = vis, samples
        else:
            unit_vis = _rows(vis, dev[route.units[unit].handles['batch_rows']])
            unit_samples = [samples[i] for i in rows]
        if has_two_phase_loss(dec):
            requests[unit] = dec.loss_costs(q, unit_vis, unit_samples)
        else:  # a decoder written against the one-call contract (it may synchronise)
            per_unit[unit] = {
                k: v * weights[unit] for k, v in dec.loss(q, unit_vis, unit_samples).items()
            }
    assigned = solve_assignments(list(requests.values()))  # the step's one device->host copy
    for (unit, request), tgt_inds in zip(requests.items(), assigned, strict=True):
        losses = decoders[unit].loss_assigned(request, tgt_inds)
        per_unit[unit] = {k: v * weights[unit] for k, v in losses.items()}
    return {k: v for unit in decoders for k, v in per_unit[unit].items()}


def host_valid_hw(samples: SampleList) -> np.ndarray:
    """(B, 2) float32 fraction of the square frame covered by each image (metainfo)."""
    valid = []
    for s in samples:
        shape, side = s.metainfo.get('ori_shape'), s.metainfo.get('square_size')
        valid.append((1.0, 1.0) if not shape or not side else (shape[0] / side, shape[1] / side))
    return np.asarray(valid, dtype=np.float32).reshape(-1, 2)
