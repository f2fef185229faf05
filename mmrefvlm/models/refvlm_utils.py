# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""Helpers of ``RefVLM``: splicing visual tokens, the LM loss, LoRA, prediction assembly."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from mmengine.structures import InstanceData
from torch import Tensor, nn

from mmrefvlm.structures import SampleList, UnitQueries, VisualContext

IGNORE_INDEX = -100


def splice(
    embeds: Tensor, input_ids: Tensor, token_id: int, values: Tensor, expected: Tensor, what: str
) -> Tensor:
    """Replace the embeddings of every ``token_id`` position by ``values`` (in batch order).

    Args:
        embeds (Tensor): (B, L, D) token embeddings.
        input_ids (Tensor): (B, L) long.
        token_id (int): The placeholder id (``<image>`` or ``[VPT]``).
        values (Tensor): (M, D) replacement rows, ordered by sample then position.
        expected (Tensor): (B,) long, number of placeholder positions each sample must have.
        what (str): Name for error messages.

    Returns:
        Tensor: (B, L, D) with the placeholders replaced (out of place, differentiable).
    """
    mask = input_ids == token_id
    counts = mask.sum(1)
    if not torch.equal(counts, expected.to(counts)):
        raise ValueError(
            f'{what}: the token sequences hold {counts.tolist()} placeholder tokens '
            f"per sample but the visual inputs give {expected.tolist()}; the pipeline's "
            'num_image_tokens / num_prompt_tokens must match the encoders'
        )
    if values.shape[0] == 0:
        return embeds
    return embeds.masked_scatter(mask.unsqueeze(-1), values.to(embeds.dtype))


def splice_at(embeds: Tensor, positions: Tensor, values: Tensor) -> Tensor:
    """Replace the embeddings at host-planned positions (no device->host synchronisation).

    Args:
        embeds (Tensor): (B, L, D) token embeddings.
        positions (Tensor): (M,) long, flat positions ``b * L + t``, ordered by sample then
            position (``TokenPlan``).
        values (Tensor): (M, D) replacement rows in the same order.

    Returns:
        Tensor: (B, L, D), out of place and differentiable (:func:`splice` without the count
        check, which the plan does on the host).
    """
    if values.shape[0] == 0:
        return embeds
    flat = embeds.flatten(0, 1).index_copy(0, positions, values.to(embeds.dtype))
    return flat.view_as(embeds)


def lm_loss(
    hidden: Tensor,
    labels: Tensor,
    lm_head: nn.Module,
    *,
    index: Tensor | None = None,
    targets: Tensor | None = None,
) -> Tensor:
    """Mean next-token cross-entropy over labelled positions only (logits are computed for those
    positions alone, not for the whole (B, L, V) grid).

    Args:
        hidden (Tensor): (B, L, D) last hidden states.
        labels (Tensor): (B, L) long, -100 where not supervised.
        lm_head (nn.Module): The LM head.
        index (Tensor, optional): (N,) long, flat positions ``b * L + t`` of the states that
            predict a label, planned on the host (``TokenPlan.lm_index``); with ``targets`` (N,)
            their labels. Then ``labels`` is not read (no device->host synchronisation).
        targets (Tensor, optional): See ``index``.
    """
    if index is not None and targets is not None:
        if index.shape[0] == 0:
            return lm_head(hidden[:, :1]).sum() * 0.0
        logits = lm_head(hidden.flatten(0, 1).index_select(0, index))
        return F.cross_entropy(logits.float(), targets)
    targets = labels[:, 1:]
    sel = targets != IGNORE_INDEX
    if not bool(sel.any()):
        return lm_head(hidden[:, :1]).sum() * 0.0
    logits = lm_head(hidden[:, :-1][sel])
    return F.cross_entropy(logits.float(), targets[sel])


def select_rows(
    queries: UnitQueries, vis: VisualContext, samples: SampleList
) -> tuple[list[int], UnitQueries, VisualContext, SampleList]:
    """The samples that have at least one query of a unit, to run its decoder on them only.

    Decoders are per-sample (padded slots never reach a loss), so their losses, gradients and
    predictions on the kept rows are unchanged, the other samples' decoder compute is saved, and a
    sample's predictions no longer depend on its batch mates.

    Returns:
        tuple: kept row indices, and the queries, features and samples of those rows (the inputs
        themselves when every row is kept).
    """
    rows = queries.mask.any(1).nonzero(as_tuple=True)[0]
    if len(rows) == len(samples):
        return list(range(len(samples))), queries, vis, samples
    sub_q = UnitQueries(
        embeds=queries.embeds[rows], mask=queries.mask[rows], group_ids=queries.group_ids[rows]
    )
    sub_vis = VisualContext(
        pyramid=tuple(p[rows] for p in vis.pyramid),
        clip=vis.clip[rows],
        valid_hw=vis.valid_hw[rows],
    )
    kept = rows.tolist()
    return kept, sub_q, sub_vis, [samples[i] for i in kept]


def merge_instances(parts: Sequence[tuple[str, list, InstanceData]], num: int) -> InstanceData:
    """Merge per-unit predictions of one sample into one ``InstanceData`` in ``<REF>`` order.

    Args:
        parts: ``(unit, refs, instances)`` where ``refs`` are the sample's ``RoutedRef`` of that
            unit (their ``slot`` indexes ``instances``).
        num (int): Total number of entries (refs over all units).

    Fields a unit does not produce are filled with NaN (float) or False (bool) for its entries, so
    metrics select entries by ``units``; ``unit_fields`` (list[tuple[str, ...]]) names, per entry,
    the fields its own unit produced (a False mask is then "not predicted", not "empty").
    """
    out = InstanceData()
    labels: list[str | None] = [None] * num
    units: list[str | None] = [None] * num
    fields: list[tuple[str, ...]] = [()] * num
    gids, order = [0] * num, 0
    protos: dict[str, Tensor] = {}
    items: dict[str, list] = {}
    for unit, refs, inst in parts:
        for key in inst.keys():
            if isinstance(inst[key], Tensor):
                protos.setdefault(key, inst[key])
        own = tuple(k for k in inst.keys() if isinstance(inst[k], Tensor))
        for r in refs:
            labels[order], units[order], gids[order] = r.phrase, unit, r.group_id
            fields[order] = own
            for key in protos:
                if key in inst:
                    items.setdefault(key, []).append((order, inst[key][r.slot]))
            order += 1
    out.labels, out.units, out.unit_fields = labels, units, fields
    out.group_ids = torch.tensor(gids, dtype=torch.long)
    for key, proto in protos.items():
        shape = (num, *proto.shape[1:])
        if proto.dtype == torch.bool:
            full = torch.zeros(shape, dtype=torch.bool, device=proto.device)
        else:
            full = torch.full(shape, float('nan'), dtype=proto.dtype, device=proto.device)
        for i, v in items.get(key, ()):
            full[i] = v
        out.set_field(full, key)
    return out


def apply_lora(llm: nn.Module, lora: Mapping, trainable_token_ids: Sequence[int]) -> nn.Module:
    """Wrap ``llm`` with peft LoRA; the new special-token rows of the input embedding and of the
    LM head stay trainable (peft ``trainable_token_indices``)."""
    try:
        from peft import LoraConfig, get_peft_model
    except ImportError as err:  # pragma: no cover - peft is a runtime requirement
        raise ImportError('LoRA needs `peft` (requirements/runtime.txt)') from err
    cfg = dict(lora)
    hf: Any = llm  # an HF PreTrainedModel: nn.Module does not declare its embedding API
    names = {id(m): n for n, m in llm.named_modules()}
    emb_name = names[id(hf.get_input_embeddings())].split('.')[-1]
    token_idx = {emb_name: list(trainable_token_ids)}
    head = hf.get_output_embeddings()
    if head is not None and head.weight is not hf.get_input_embeddings().weight:
        token_idx[names[id(head)].split('.')[-1]] = list(trainable_token_ids)
    cfg.setdefault('trainable_token_indices', token_idx)
    cfg.setdefault('task_type', 'CAUSAL_LM')
    if getattr(llm, 'is_loaded_in_4bit', False) or getattr(llm, 'is_loaded_in_8bit', False):
        from peft import prepare_model_for_kbit_training  # QLoRA

        llm = prepare_model_for_kbit_training(llm, use_gradient_checkpointing=False)
    return get_peft_model(llm, LoraConfig(**cfg))
