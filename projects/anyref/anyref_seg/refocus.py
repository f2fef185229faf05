# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""AnyRef's refocusing (§3.2, Eq. 2): ``h_obj += lambda_f * sum_i a_i h_i`` over the answer tokens
before ``<obj>``, weighted by the last layer's attention, which is computed for that one layer
and only for the query rows needed, whatever attention kernel (SDPA, flash) the LLM runs."""

from __future__ import annotations

import sys
from typing import Any

import torch
from torch import Tensor, nn

from mmrefvlm.models.generation import split_llm
from mmrefvlm.models.model_hooks import RefStateContext
from mmrefvlm.registry import TASK_UTILS


class LastLayerCapture:
    """Records the inputs of the LLM's last self-attention module, call after call.

    A forward pre-hook (``with_kwargs``) keeps the normalised hidden states and the rotary
    ``(cos, sin)`` the module receives. A call without a KV cache, or with an empty one, starts a
    new sequence; calls that extend a cache (generation steps) are appended to it, so the record
    always covers the positions of the sequence the model is processing.

    Args:
        attention (nn.Module): The last decoder layer's ``self_attn`` (HF Llama / Qwen2 /
            Mistral / Qwen3 layout: ``q_proj``, ``k_proj``, ``head_dim``, ``scaling``,
            ``num_key_value_groups``, optional ``q_norm`` / ``k_norm``).
    """

    def __init__(self, attention: nn.Module) -> None:
        for name in ('q_proj', 'k_proj', 'head_dim', 'scaling', 'num_key_value_groups'):
            if not hasattr(attention, name):
                raise TypeError(f'{type(attention).__name__} has no {name!r}: unsupported LLM')
        self.attention = attention
        module = sys.modules[type(attention).__module__]
        self.apply_rotary = getattr(module, 'apply_rotary_pos_emb', None)
        if self.apply_rotary is None:
            raise TypeError(f'{module.__name__} has no apply_rotary_pos_emb: unsupported LLM')
        self.chunks: list[tuple[Tensor, Tensor, Tensor]] = []
        self.handle = attention.register_forward_pre_hook(self._hook, with_kwargs=True)

    def _hook(self, module: nn.Module, args: tuple, kwargs: dict) -> None:
        hidden = kwargs.get('hidden_states', args[0] if args else None)
        cos, sin = kwargs['position_embeddings']
        cache = kwargs.get('past_key_values')
        layer = getattr(module, 'layer_idx', 0)
        if cache is None or cache.get_seq_length(layer) == 0:
            self.chunks = []
        batch = hidden.shape[0]  # default position ids give (1, L, d) tables
        self.chunks.append((hidden, cos.expand(batch, -1, -1), sin.expand(batch, -1, -1)))

    def take(self) -> tuple[Tensor, Tensor, Tensor]:
        """(B, L, D) inputs, (B, L, d) cos and sin of the recorded sequence; clears the record."""
        if not self.chunks:
            raise RuntimeError('no forward pass of the LLM was recorded before refocusing')
        hidden, cos, sin = (torch.cat(parts, 1) for parts in zip(*self.chunks, strict=True))
        self.chunks = []
        return hidden, cos, sin

    def attention_rows(
        self, hidden: Tensor, cos: Tensor, sin: Tensor, rows: Tensor, query_pos: Tensor,
        key_mask: Tensor
    ) -> Tensor:  # fmt: skip
        """Last-layer attention probabilities of selected queries, averaged over heads.

        Args:
            hidden (Tensor): (B, L, D) recorded inputs of the attention module.
            cos (Tensor): (B, L, d) rotary cosines; ``sin`` likewise.
            sin (Tensor): (B, L, d).
            rows (Tensor): (R,) long, the sample of each query.
            query_pos (Tensor): (R,) long, the query position of each (attends to keys
                ``0 .. query_pos``).
            key_mask (Tensor): (B, >= L) bool, keys that are not padding (its first L
                columns are used).

        Returns:
            Tensor: (R, L) float32 attention weights (0 on masked and future keys), the mean over
            heads of ``softmax(q k^T * scaling + mask)`` exactly as eager attention computes it.
        """
        attn = self.attention
        d = attn.head_dim
        x, c, s = hidden[rows], cos[rows], sin[rows]  # (R, L, .)
        q_in = x[torch.arange(len(rows), device=x.device), query_pos][:, None]  # (R, 1, D)
        q = attn.q_proj(q_in).view(len(rows), 1, -1, d)
        k = attn.k_proj(x).view(len(rows), x.shape[1], -1, d)
        if hasattr(attn, 'q_norm'):  # Qwen3-style per-head norms before the rotary code
            q, k = attn.q_norm(q), attn.k_norm(k)
        q, k = q.transpose(1, 2), k.transpose(1, 2)  # (R, H, 1, d), (R, Hkv, L, d)
        c_q = c[torch.arange(len(rows), device=x.device), query_pos][:, None]
        s_q = s[torch.arange(len(rows), device=x.device), query_pos][:, None]
        q, _ = self.apply_rotary(q, q, c_q, s_q)
        _, k = self.apply_rotary(k, k, c, s)
        k = k.repeat_interleave(attn.num_key_value_groups, dim=1)
        scores = (q @ k.transpose(2, 3))[:, :, 0] * attn.scaling  # (R, H, L)
        pos = torch.arange(x.shape[1], device=x.device)
        # in generation the last token is never fed back: the record may be one key shorter
        allowed = key_mask[rows, : x.shape[1]] & (pos[None] <= query_pos[:, None])
        scores = scores.float().masked_fill(~allowed[:, None], float('-inf'))
        return scores.softmax(-1).mean(1)


@TASK_UTILS.register_module()
class RefocusRefiner:
    """Refocus each reference state on the answer tokens before it (AnyRef, Eq. 2).

    For a reference whose routed state sits at position ``t`` (the position that emits
    ``<obj>`` with ``ref_position='emitting'``, the ``<obj>`` itself with ``'ref'``), let ``s`` be
    the position that emits the first token of its answer and ``W = {s, ..., t - 1}``. With
    ``a_i`` the last layer's attention of query ``t`` on key ``i`` averaged over heads and
    ``a~_i = a_i / sum_{j in W} a_j``::

        h_t <- h_t + lambda_f * sum_{i in W} a~_i h_i

    where ``h`` are the last-layer states the router reads. Nothing is detached (the mask loss
    reaches the answer tokens through ``h_i`` and ``a~_i``, as in the public code). A reference
    with an empty window (it opens its answer) is left as it is.

    The attention comes from :class:`LastLayerCapture` (installed by ``attach``): only the last
    layer's query rows at the references and its keys are computed, so the LLM keeps its fast
    attention kernel. Works in training (teacher forcing) and in generation (the record grows with
    each decoding step).

    Args:
        lambda_f (float): Refocusing weight. Defaults to 0.1 (the paper's, fixed).
        ref_position (str): ``'emitting'`` or ``'ref'``; must match the router's. Defaults to
            ``'emitting'`` (AnyRef's code).
    """

    def __init__(self, lambda_f: float = 0.1, ref_position: str = 'emitting') -> None:
        if ref_position not in ('emitting', 'ref'):
            raise ValueError(f"ref_position must be 'emitting' or 'ref', got {ref_position!r}")
        self.lambda_f = float(lambda_f)
        self.shift = 1 if ref_position == 'emitting' else 0
        self.ref_position = ref_position
        self.capture: LastLayerCapture | None = None

    def attach(self, llm: nn.Module) -> None:
        """Hook the last decoder layer's self-attention of ``llm`` (PEFT-wrapped or not)."""
        decoder: Any = split_llm(llm)[0]
        self.capture = LastLayerCapture(decoder.layers[-1].self_attn)

    def windows(
        self, positions: list[list[int]], context: RefStateContext
    ) -> list[tuple[int, int, int]]:
        """``(sample, t, s)`` of every reference with a non-empty window ``[s, t)``."""
        out = []
        mask = context.answer_mask.tolist()
        for b, sample_positions in enumerate(positions):
            for position in sample_positions:
                t = position - self.shift
                a = position
                while a > 0 and mask[b][a - 1]:
                    a -= 1
                s = a - 1
                if 0 <= s < t:
                    out.append((b, t, s))
        return out

    def __call__(
        self, hidden: Tensor, positions: list[list[int]], context: RefStateContext
    ) -> Tensor:
        """``hidden`` (B, L, D) with every reference state refocused (a new tensor)."""
        if self.capture is None:
            raise RuntimeError('RefocusRefiner.attach(llm) was not called')
        record = self.capture.take()
        wins = self.windows(positions, context)
        if not wins or self.lambda_f == 0:
            return hidden
        dev = hidden.device
        rows = torch.tensor([b for b, _, _ in wins], device=dev)
        t = torch.tensor([t for _, t, _ in wins], device=dev)
        s = torch.tensor([s for _, _, s in wins], device=dev)
        probs = self.capture.attention_rows(*record, rows, t + context.offset, context.key_mask)
        # the attention over the window, in the hidden states' own positions, re-normalised
        idx = torch.arange(hidden.shape[1], device=dev)
        in_win = (idx[None] >= s[:, None]) & (idx[None] < t[:, None])
        keys = (idx + context.offset).clamp(max=probs.shape[1] - 1)
        weights = probs[:, keys] * in_win
        weights = weights / weights.sum(1, keepdim=True).clamp_min(1e-12)
        focus = torch.einsum('rl,rld->rd', weights.to(hidden.dtype), hidden[rows])
        return hidden.index_put((rows, t), self.lambda_f * focus, accumulate=True)
