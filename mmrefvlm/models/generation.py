# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""Batched greedy decoding with a KV cache that keeps the last-layer state of every token."""

from __future__ import annotations

from dataclasses import dataclass

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
    base = llm.get_base_model() if hasattr(llm, 'get_base_model') else llm
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
) -> GenerationOutput:
    """Greedy decoding of a left-padded batch of prompt embeddings.

    Args:
        llm (nn.Module): HF causal LM (optionally PEFT-wrapped).
        inputs_embeds (Tensor): (B, P, D) prompt embeddings, left-padded.
        attention_mask (Tensor): (B, P) 1 on real prompt tokens.
        eos_id (int): Stops a sample.
        pad_id (int): Fill after EOS.
        max_new_tokens (int): Generation budget.

    Returns:
        GenerationOutput
    """
    from transformers import DynamicCache

    if max_new_tokens <= 0:
        raise ValueError(f'max_new_tokens must be positive, got {max_new_tokens}')
    decoder, head, embed = split_llm(llm)
    bsz = inputs_embeds.shape[0]
    device = inputs_embeds.device
    mask = attention_mask.long()
    cache = DynamicCache()

    def step(embeds: Tensor, m: Tensor) -> Tensor:
        pos = (m.cumsum(-1) - 1).clamp_min(0)[:, -embeds.shape[1] :]
        out = decoder(
            inputs_embeds=embeds,
            attention_mask=m,
            position_ids=pos,
            past_key_values=cache,
            use_cache=True,
        )
        return out.last_hidden_state[:, -1]

    h = step(inputs_embeds, mask)
    prompt_last = h
    tokens, states = [], []
    finished = torch.zeros(bsz, dtype=torch.bool, device=device)
    lengths = torch.zeros(bsz, dtype=torch.long, device=device)
    for _ in range(max_new_tokens):
        nxt = head(h).argmax(-1)
        nxt = torch.where(finished, torch.full_like(nxt, pad_id), nxt)
        tokens.append(nxt)
        lengths += (~finished).long()
        finished |= nxt == eos_id
        if bool(finished.all()):
            states.append(torch.zeros_like(h))  # an EOS state is never used
            break
        mask = torch.cat([mask, torch.ones(bsz, 1, dtype=mask.dtype, device=device)], 1)
        h = step(embed(nxt)[:, None], mask)
        states.append(h)
    tok = torch.stack(tokens, 1)
    st = torch.stack(states, 1)
    emit = torch.cat([prompt_last[:, None], st[:, :-1]], 1)
    return GenerationOutput(
        tokens=tok, lengths=lengths, states=st, emit_states=emit, finished=finished
    )
