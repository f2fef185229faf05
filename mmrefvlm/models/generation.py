# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""Batched greedy decoding with a KV cache that keeps the last-layer state of every token."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

import torch
from torch import Tensor, nn


@dataclass
class GenerationOutput:
    """Result of :func:`greedy_generate`.

    Attributes:
        tokens (Tensor): (B, T) long generated ids; positions after a sample's EOS hold ``pad_id``.
        lengths (Tensor): (B,) long, generated tokens per sample including its EOS.
        states (Tensor): (B, T, D) last-layer state computed with token t as the input (the
            REF-VLM ``<REF>``-position convention).
        emit_states (Tensor): (B, T, D) the state that predicted token t (the LISA "emitting"
            convention): the prompt's last state for t = 0.
        finished (Tensor): (B,) bool, True where the sample produced EOS.
    """

    tokens: Tensor
    lengths: Tensor
    states: Tensor
    emit_states: Tensor
    finished: Tensor


def split_llm(llm: nn.Module) -> tuple[nn.Module, nn.Module, nn.Module]:
    """(decoder stack, lm_head, input embedding) of an HF causal LM, PEFT-wrapped or not.

    Calling the decoder stack directly gives the final-norm hidden state without materialising every
    layer's states (``output_hidden_states`` would, at 33 layers x batch x length).
    """
    # HF/PEFT methods are not declared on nn.Module: typed Any for the checker.
    wrapped: Any = llm
    base: Any = wrapped.get_base_model() if hasattr(wrapped, 'get_base_model') else wrapped
    return base.get_decoder(), base.get_output_embeddings(), base.get_input_embeddings()


@torch.no_grad()
def greedy_generate(
    llm: nn.Module,
    inputs_embeds: Tensor,
    attention_mask: Tensor,
    *,
    eos_id: int,
    pad_id: int,
    max_new_tokens: int,
    cache: str = 'dynamic',
) -> GenerationOutput:
    """Greedy decoding of a left-padded batch of prompt embeddings.

    Args:
        llm (nn.Module): HF causal LM (optionally PEFT-wrapped).
        inputs_embeds (Tensor): (B, P, D) prompt embeddings, left-padded.
        attention_mask (Tensor): (B, P) 1 on real prompt tokens.
        eos_id (int): Stops a sample.
        pad_id (int): Fill after EOS.
        max_new_tokens (int): Generation budget.
        cache (str): ``'dynamic'`` (default): HF ``DynamicCache``, which grows every layer's K/V
            by concatenation at each step; ``'static'``: K/V buffers of length
            ``P + max_new_tokens`` allocated once and written in place (HF ``StaticCache``; every
            step attends over all slots, unwritten ones masked). On CPU the static cache is no
            faster (docs/benchmarks.md §4); it is the layout that CUDA graphs / ``torch.compile``
            need.
            Both give the same tokens and states.

    Returns:
        GenerationOutput
    """
    from transformers import DynamicCache, StaticCache

    if max_new_tokens <= 0:
        raise ValueError(f'max_new_tokens must be positive, got {max_new_tokens}')
    if cache not in ('static', 'dynamic'):
        raise ValueError(f"cache must be 'static' or 'dynamic', got {cache!r}")
    decoder, head, embed = split_llm(llm)
    bsz, prompt_len = inputs_embeds.shape[:2]
    device = inputs_embeds.device
    total = prompt_len + max_new_tokens
    # One mask for the whole run (real prompt tokens, then every generated slot) and the positions
    # it implies (left padding skipped): steps slice them instead of concatenating a column.
    full_mask = torch.ones(bsz, total, dtype=torch.long, device=device)
    full_mask[:, :prompt_len] = attention_mask.long()
    full_pos = (full_mask.cumsum(-1) - 1).clamp_min(0)
    kv = (
        StaticCache(config=cast(Any, decoder).config, max_cache_len=total)
        if cache == 'static'
        else DynamicCache()
    )

    def step(embeds: Tensor, start: int) -> Tensor:
        end = start + embeds.shape[1]
        out = decoder(
            inputs_embeds=embeds,
            # A static cache attends over all of its slots; unwritten ones lie in the causal future.
            attention_mask=full_mask if cache == 'static' else full_mask[:, :end],
            position_ids=full_pos[:, start:end],
            past_key_values=kv,
            use_cache=True,
        )
        return out.last_hidden_state[:, -1]

    h = step(inputs_embeds, 0)
    prompt_last = h
    tokens, states = [], []
    finished = torch.zeros(bsz, dtype=torch.bool, device=device)
    lengths = torch.zeros(bsz, dtype=torch.long, device=device)
    for t in range(max_new_tokens):
        nxt = head(h).argmax(-1)
        nxt = torch.where(finished, torch.full_like(nxt, pad_id), nxt)
        tokens.append(nxt)
        lengths += (~finished).long()
        finished |= nxt == eos_id
        if bool(finished.all()):
            states.append(torch.zeros_like(h))  # an EOS state is never used
            break
        h = step(embed(nxt)[:, None], prompt_len + t)
        states.append(h)
    tok = torch.stack(tokens, 1)
    st = torch.stack(states, 1)
    emit = torch.cat([prompt_last[:, None], st[:, :-1]], 1)
    return GenerationOutput(
        tokens=tok, lengths=lengths, states=st, emit_states=emit, finished=finished
    )
