# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""``SAM4MLLM``: an MLLM that writes SAM prompts as text (no new token, no head, CE only), with
SAM as a frozen post-processor, and PQPP's second round asked in one batched forward pass."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import torch
from mmengine.structures import InstanceData
from torch import Tensor, nn

from mmrefvlm.datasets.chat_templates import get_chat_template
from mmrefvlm.models import refvlm as refvlm_module
from mmrefvlm.models.generation import split_llm
from mmrefvlm.models.refvlm import RefVLM
from mmrefvlm.models.unit_decoders.utils import square_to_original
from mmrefvlm.registry import MODELS
from mmrefvlm.structures import SampleList

from .prompt_sam import PromptableSam
from .prompt_text import PromptCodec, PromptGroup
from .transforms import POINT_QUESTION, VARIANTS

#: One SAM prompt in original pixels: box ``[x1, y1, x2, y2]`` and ``(x, y, label)`` points.
Prompt = tuple[list[float], list[tuple[float, float, int]]]


@MODELS.register_module()
class SAM4MLLM(RefVLM):
    """SAM4MLLM (Chen et al., ECCV 2024) on the framework's MLLM.

    Training is :class:`RefVLM`'s with no unit decoder: next-token CE on answers that spell SAM
    prompts (:class:`SAM4MLLMConversation`); SAM takes no part and gets no gradient. Prediction:

    1. Greedy generation (round 1); :class:`PromptCodec` parses the text into prompt groups
       (never raises; its warnings go to ``sample.warnings``). "No object found." or no box:
       no mask (GRES "empty").
    2. ``variant='ppg'``: each group's box and points go to SAM as they are.
       ``variant='pqpp'``: a ``grid_size`` x ``grid_size`` grid of points inside every box is
       put to the model as round-2 questions (:data:`POINT_QUESTION`, after the round-1 answer
       and its EOS, in the chat template of the training data); all points of all boxes of the
       batch are answered in **one batched forward pass** over a KV cache of the shared context
       (that context is encoded once per sample). A point is kept when the most probable next
       token is ``Yes`` (positive) or ``No`` (negative) with probability above
       ``point_threshold``; SAM gets the box with the kept points.
    3. :class:`PromptableSam` (frozen) decodes one mask per box; a sample's masks are its
       ``pred_instances`` (unit ``mask``; the metrics take their union).

    Per sample, ``timing`` holds the batch's seconds per stage divided by the batch size
    (``generate``, ``point_query``, ``sam``) and ``pred_prompts`` the prompts SAM received.

    Args:
        sam (dict | PromptableSam): The SAM (trained apart, frozen here).
        variant (str): ``'ppg'`` or ``'pqpp'``. Defaults to ``'ppg'``.
        num_bins (int): Coordinate bins of the prompt text. Defaults to 1000.
        chat_template (str | dict): The pipeline's chat template (PQPP's round 2 must be
            tokenised as the training data were). Defaults to ``'plain'``.
        grid_size (int): PQPP grid side. Defaults to 5.
        point_threshold (float): PQPP confidence threshold. Defaults to 0.9.
        yes_token (str): Text of the "on the object" answer token. Defaults to ``'Yes'``.
        no_token (str): Text of the "off the object" answer token. Defaults to ``'No'``.
        mask_threshold (float): SAM logit threshold. Defaults to 0.0.
        **kwargs: :class:`RefVLM` arguments (no ``unit_decoders``).
    """

    def __init__(
        self,
        *,
        sam: dict | PromptableSam,
        variant: str = 'ppg',
        num_bins: int = 1000,
        chat_template: str | dict = 'plain',
        grid_size: int = 5,
        point_threshold: float = 0.9,
        yes_token: str = 'Yes',
        no_token: str = 'No',
        mask_threshold: float = 0.0,
        **kwargs: Any,
    ) -> None:
        if kwargs.get('unit_decoders'):
            raise ValueError('SAM4MLLM adds no decoder head: leave unit_decoders empty')
        super().__init__(**kwargs)
        if variant not in VARIANTS:
            raise ValueError(f'variant must be one of {VARIANTS}, got {variant!r}')
        if grid_size < 1 or not 0.0 <= point_threshold < 1.0:
            raise ValueError(
                f'need grid_size >= 1, 0 <= point_threshold < 1: {grid_size}, {point_threshold}'
            )
        self.sam = sam if isinstance(sam, nn.Module) else MODELS.build(sam)
        self.sam.requires_grad_(False)
        self.variant, self.codec = variant, PromptCodec(num_bins)
        self.chat = get_chat_template(chat_template)
        self.grid_size, self.point_threshold = grid_size, point_threshold
        self.mask_threshold = mask_threshold
        ids = [self.tokenizer.encode(t) for t in (yes_token, no_token)]
        if any(len(i) != 1 for i in ids) or ids[0] == ids[1]:
            raise ValueError(f'{yes_token!r} / {no_token!r} must be two single tokens, got {ids}')
        self.yes_id, self.no_id = ids[0][0], ids[1][0]
        self._round2_ids: tuple[list[int], list[int]] | None = None

    def train(self, mode: bool = True) -> SAM4MLLM:
        """Set the mode; the frozen SAM stays in eval mode."""
        super().train(mode)
        self.sam.eval()
        return self

    # ------------------------------------------------------------------ round 2 (PQPP)
    def grid_points(self, group: PromptGroup) -> list[tuple[int, int]]:
        """``grid_size``^2 point bins at the cell centres of a uniform grid over the box."""
        x1, y1, x2, y2 = group.box
        g = self.grid_size
        return [
            (int(x1 + (i + 0.5) * (x2 + 1 - x1) / g), int(y1 + (j + 0.5) * (y2 + 1 - y1) / g))
            for j in range(g)
            for i in range(g)
        ]

    def _suffix_ids(self, group: PromptGroup, point: tuple[int, int]) -> list[int]:
        """Round-2 tokens after the round-1 EOS, exactly as ``FormatConversation`` writes them."""
        question = POINT_QUESTION.format(
            point=self.codec.format_xy(*point), box=self.codec.format_box(group.box)
        )
        tok = self.tokenizer
        if self._round2_ids is None:  # the fixed parts, encoded once (25 rows per box)
            self._round2_ids = (tok.encode(self.chat.turn_sep), tok.encode(self.chat.assistant))
        sep, assistant = self._round2_ids
        return sep + tok.encode(self.chat.user.format(content=question)) + assistant

    @torch.no_grad()
    def point_answer_probs(
        self,
        embeds: Tensor,
        attention_mask: Tensor,
        answers: Sequence[Sequence[int]],
        rows: Sequence[tuple[int, PromptGroup, tuple[int, int]]],
    ) -> Tensor:
        """Next-token distribution after each round-2 question, from one batched forward pass.

        Args:
            embeds (Tensor): (B, P, D) round-1 prompt embeddings (left-padded).
            attention_mask (Tensor): (B, P) 1 on real prompt tokens.
            answers (Sequence[Sequence[int]]): Round-1 generated ids per sample (no EOS).
            rows (Sequence): ``(sample, box group, point bins)`` of every question.

        Returns:
            Tensor: (R, V) float probabilities, one row per question.
        """
        from transformers import DynamicCache

        decoder, head, embed = split_llm(self.llm)
        dev, eos = embeds.device, self.tokenizer.ids.eos
        # 1. The shared context of each sample (prompt + round-1 answer + EOS), encoded once.
        keep = sorted({b for b, _, _ in rows})
        ctx = [
            torch.cat([embeds[b][attention_mask[b].bool()], embed(torch.tensor(
                [*answers[b], eos], device=dev))])
            for b in keep
        ]  # fmt: skip
        length = max(len(c) for c in ctx)
        ctx_mask = torch.zeros(len(ctx), length, dtype=torch.long, device=dev)
        ctx_embeds = embeds.new_zeros(len(ctx), length, embeds.shape[-1])
        for i, c in enumerate(ctx):
            ctx_embeds[i, length - len(c) :], ctx_mask[i, length - len(c) :] = c, 1
        cache = DynamicCache()
        decoder(
            inputs_embeds=ctx_embeds,
            attention_mask=ctx_mask,
            position_ids=(ctx_mask.cumsum(-1) - 1).clamp_min(0),
            past_key_values=cache,
            use_cache=True,
        )
        # 2. Every question in one batched pass over the cache (rows share their sample's part).
        suffix = [self._suffix_ids(group, pt) for _, group, pt in rows]
        width = max(len(s) for s in suffix)
        ids = torch.full((len(rows), width), self.tokenizer.ids.pad, dtype=torch.long, device=dev)
        smask = torch.zeros_like(ids)
        for r, s in enumerate(suffix):
            ids[r, : len(s)], smask[r, : len(s)] = torch.tensor(s, device=dev), 1
        src = torch.tensor([keep.index(b) for b, _, _ in rows], device=dev)
        cache.batch_select_indices(src)
        hidden = decoder(
            inputs_embeds=embed(ids),
            attention_mask=torch.cat([ctx_mask[src], smask], 1),
            position_ids=ctx_mask.sum(1)[src, None] + torch.arange(width, device=dev),
            past_key_values=cache,
            use_cache=True,
        ).last_hidden_state
        last = hidden[torch.arange(len(rows), device=dev), smask.sum(1) - 1]
        return head(last).float().softmax(-1)

    def query_points(
        self,
        embeds: Tensor,
        attention_mask: Tensor,
        answers: Sequence[Sequence[int]],
        groups: Sequence[Sequence[PromptGroup]],
    ) -> list[list[list[tuple[int, int, int, float]]]]:
        """PQPP round 2: the kept grid points of every group (see :meth:`point_answer_probs`).

        Returns:
            list: per sample, per group, the kept points ``(x_bin, y_bin, label, probability)``:
            label 1 when ``Yes`` is the most probable next token with probability above
            ``point_threshold``, 0 likewise for ``No``.
        """
        out: list[list[list[tuple[int, int, int, float]]]] = [[[] for _ in g] for g in groups]
        rows = [
            (b, j, pt) for b, gs in enumerate(groups) for j, g in enumerate(gs)
            for pt in self.grid_points(g)
        ]  # fmt: skip
        if not rows:
            return out
        probs = self.point_answer_probs(
            embeds, attention_mask, answers, [(b, groups[b][j], pt) for b, j, pt in rows]
        )
        prob, token = probs.max(-1)
        for (b, j, (x, y)), p, t in zip(rows, prob.tolist(), token.tolist(), strict=True):
            if p > self.point_threshold and t in (self.yes_id, self.no_id):
                out[b][j].append((x, y, int(t == self.yes_id), p))
        return out

    # ------------------------------------------------------------------ SAM
    @torch.no_grad()
    def segment(self, prompts: Sequence[Sequence[Prompt]], data_samples: SampleList) -> list:
        """Masks (k_b, H, W) bool of each sample's prompts (original pixels) with the frozen
        SAM; samples without a prompt get (0, H, W)."""
        dev = self.sam.pixel_mean.device
        keep = [b for b, p in enumerate(prompts) if p]
        results = [
            torch.zeros(0, *s.metainfo['ori_shape'], dtype=torch.bool, device=dev)
            for s in data_samples
        ]
        if not keep:
            return results
        images = [torch.as_tensor(data_samples[b].sam_image, device=dev) for b in keep]
        emb = self.sam.encode(torch.stack(images))
        inds, boxes, points = [], [], []
        for k, b in enumerate(keep):
            scale = self.sam.image_size / data_samples[b].metainfo['square_size']
            for box, pts in prompts[b]:
                inds.append(k)
                boxes.append([v * scale for v in box])
                points.append(
                    torch.tensor(
                        [(x * scale, y * scale, lab) for x, y, lab in pts], device=dev
                    ).reshape(-1, 3)
                )
        logits = self.sam.decode(
            emb[torch.tensor(inds, device=dev)], torch.tensor(boxes, device=dev), points
        )
        owner = torch.tensor([keep[i] for i in inds], device=dev)
        for b in keep:
            sel = logits[owner == b]
            results[b] = square_to_original(sel, data_samples[b]) > self.mask_threshold
        return results

    # ------------------------------------------------------------------ predict
    @torch.no_grad()
    def predict(self, inputs: dict, data_samples: SampleList) -> SampleList:
        """Generate -> parse -> (PQPP round 2) -> SAM; see the class docstring."""
        start = time.perf_counter()
        vis, image_tokens = self.encode_images(inputs, data_samples)
        embeds, _ = self.embed_inputs(inputs, vis, image_tokens)
        gen = refvlm_module.greedy_generate(
            self.llm,
            embeds,
            inputs['attention_mask'],
            eos_id=self.tokenizer.ids.eos,
            pad_id=self.tokenizer.ids.pad,
            max_new_tokens=self.max_new_tokens,
            cache=self.generation_cache,
        )
        answers, parses = [], []
        for b in range(len(data_samples)):
            n = int(gen.lengths[b]) - int(gen.finished[b])
            ids = gen.tokens[b, :n].tolist()
            answers.append(ids)
            parses.append(self.codec.parse(self.tokenizer.decode(ids)))
        t_gen = time.perf_counter()
        groups = [p.groups for p in parses]
        if self.variant == 'pqpp':
            kept = self.query_points(embeds, inputs['attention_mask'], answers, groups)
            groups = [
                [PromptGroup(g.box, tuple(p[:3] for p in k)) for g, k in zip(gs, ks, strict=True)]
                for gs, ks in zip(groups, kept, strict=True)
            ]
        t_query = time.perf_counter()
        prompts = [
            [self.codec.to_pixels(g, s.metainfo['ori_shape']) for g in gs]
            for gs, s in zip(groups, data_samples, strict=True)
        ]
        masks = self.segment(prompts, data_samples)
        t_sam = time.perf_counter()
        num = len(data_samples)
        timing = dict(
            generate=(t_gen - start) / num,
            point_query=(t_query - t_gen) / num,
            sam=(t_sam - t_query) / num,
        )
        for b, sample in enumerate(data_samples):
            k = len(prompts[b])
            sample.pred_text = self.tokenizer.decode(answers[b])
            sample.pred_answer = sample.pred_text
            sample.warnings = [f'{w.code}: {w.message}' for w in parses[b].warnings]
            sample.pred_prompts = groups[b]
            sample.timing = timing
            sample.pred_instances = InstanceData(
                labels=[''] * k,
                units=['mask'] * k,
                group_ids=torch.zeros(k, dtype=torch.long),
                masks=masks[b].cpu(),
                bboxes=torch.tensor([p[0] for p in prompts[b]]).reshape(-1, 4),
                scores=torch.ones(k),
            )
        return data_samples
