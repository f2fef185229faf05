# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""``GSVARefVLM``: RefVLM with GSVA's per-expression outputs and its two evaluation modes."""

from __future__ import annotations

from typing import Any

import torch
from mmengine.structures import InstanceData
from torch import Tensor

from mmrefvlm.models import RefVLM
from mmrefvlm.models.generation import split_llm
from mmrefvlm.models.refvlm_utils import IGNORE_INDEX, select_rows
from mmrefvlm.registry import MODELS
from mmrefvlm.structures import SampleList, VisualContext
from mmrefvlm.trp import iter_groups

EVAL_MODES = ('generate', 'teacher_forced')


@MODELS.register_module()
class GSVARefVLM(RefVLM):
    """GSVA: one weight-shared ``[SEG]`` per expression, ``[REJ]`` for an absent target.

    Training is :class:`RefVLM`'s, configured with a ``SlotAnswerFormat`` pipeline and a
    ``SpecialTokenRefParser(ref_tokens={'[SEG]': unit}, reject_tokens={'[REJ]': unit})``:
    ``[REJ]`` slots route nothing, so only ``[SEG]`` masks enter the mask loss (GSVA's code keeps
    ``[REJ]`` slots in the mask-count normaliser with a constant zero prediction; here they are
    left out, which only rescales the mask loss). Prediction adds ``pred_slots`` to every
    sample, one entry per expression slot in answer order: ``masks`` (S, H, W) bool in original
    pixels, ``rejected`` (S,) bool (the slot's token was ``[REJ]``) and ``decoded`` (S,) bool
    (SAM ran for it). Two evaluation modes:

    * ``'generate'`` (the paper): free greedy generation; ``[SEG]`` slots are decoded,
      ``[REJ]`` slots get an all-zero mask without running the decoder.
    * ``'teacher_forced'`` (GSVA's public evaluation code): the ground-truth answer is fed (the
      pipeline keeps it: ``FormatConversation(predict=False)``); at a ground-truth ``[SEG]``
      the slot is rejected when the argmax at the emitting position is not ``[SEG]``, at a
      ground-truth ``[REJ]`` when it is ``[REJ]``. Then every ``[REJ]`` of the input becomes
      ``[SEG]`` and a second pass decodes a mask for **every** slot (``reeval``); the masks of
      rejected slots stay in ``pred_slots`` for the ``'code'`` metric mode, while
      ``pred_instances`` holds the accepted slots only (paper semantics for the core metrics).

    Args:
        eval_mode (str): ``'generate'`` or ``'teacher_forced'``. Defaults to ``'generate'``.
        seg_token (str): Defaults to ``'[SEG]'``.
        reject_token (str): Defaults to ``'[REJ]'``.
        unit (str): The unit ``[SEG]`` decodes. Defaults to ``'mask'``.
        **kwargs: :class:`RefVLM` arguments.
    """

    def __init__(
        self,
        *,
        eval_mode: str = 'generate',
        seg_token: str = '[SEG]',
        reject_token: str = '[REJ]',
        unit: str = 'mask',
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        if eval_mode not in EVAL_MODES:
            raise ValueError(f'eval_mode must be one of {EVAL_MODES}, got {eval_mode!r}')
        missing = [t for t in (seg_token, reject_token) if t not in self.tokenizer.ids]
        if missing:
            raise ValueError(f'{missing} are not special tokens: add them to extra_tokens')
        if unit not in self.unit_decoders:
            raise ValueError(f'unit {unit!r} has no decoder; decoders: {self.units}')
        self.eval_mode, self.unit = eval_mode, unit
        self.seg_id, self.rej_id = self.tokenizer.ids[seg_token], self.tokenizer.ids[reject_token]

    @torch.no_grad()
    def predict(self, inputs: dict, data_samples: SampleList) -> SampleList:
        """``eval_mode``'s prediction; both write ``pred_slots`` (see the class docstring)."""
        if self.eval_mode == 'teacher_forced':
            return self._predict_teacher_forced(inputs, data_samples)
        samples = super().predict(inputs, data_samples)
        for sample in samples:
            sample.pred_slots = self._slots_from_answer(sample)
        return samples

    def _slots_from_answer(self, sample: Any) -> InstanceData:
        """Per-slot outputs of a generated answer: ``[SEG]`` slot j gets the j-th predicted mask
        of the unit, ``[REJ]`` slots an all-zero mask."""
        h, w = sample.metainfo['ori_shape']
        pred = sample.pred_instances
        units = list(pred.get('units', []))
        masks = [pred.masks[i] for i, u in enumerate(units) if u == self.unit and 'masks' in pred]
        out_masks, rejected, decoded = [], [], []
        slots = [int(g['n']) for _, _, _, g in iter_groups(sample.get('pred_answer') or [])]
        for n in slots:
            ok = n > 0 and len(masks) > 0
            out_masks.append(masks.pop(0) if ok else torch.zeros(h, w, dtype=torch.bool))
            rejected.append(n == 0)
            decoded.append(ok)
        return InstanceData(
            masks=torch.stack(out_masks) if out_masks else torch.zeros(0, h, w, dtype=torch.bool),
            rejected=torch.tensor(rejected, dtype=torch.bool),
            decoded=torch.tensor(decoded, dtype=torch.bool),
        )

    def _hidden(
        self, inputs: dict, ids: Tensor, vis: VisualContext, image_tokens: Tensor
    ) -> Tensor:
        """Last-layer states of ``ids`` (left-padded batch: positions from the attention mask)."""
        embeds, _ = self.embed_inputs(dict(inputs, input_ids=ids), vis, image_tokens)
        decoder, _, _ = split_llm(self.llm)
        mask = inputs['attention_mask']
        pos = (mask.long().cumsum(-1) - 1).clamp_min(0)
        return decoder(
            inputs_embeds=embeds, attention_mask=mask, position_ids=pos
        ).last_hidden_state

    def _predict_teacher_forced(self, inputs: dict, data_samples: SampleList) -> SampleList:
        ids, labels = inputs['input_ids'], inputs['labels']
        if not bool((labels != IGNORE_INDEX).any()):
            raise ValueError(
                'teacher_forced evaluation needs the ground-truth answer in the input: use '
                'FormatConversation(predict=False) in the test pipeline'
            )
        vis, image_tokens = self.encode_images(inputs, data_samples)
        _, head, _ = split_llm(self.llm)
        # 1. Decisions: the token predicted at the emitting position of every ground-truth slot.
        hidden = self._hidden(inputs, ids, vis, image_tokens)
        slots = (labels != IGNORE_INDEX) & ((ids == self.seg_id) | (ids == self.rej_id))
        b_idx, p_idx = slots.nonzero(as_tuple=True)
        argmax = head(hidden[b_idx, (p_idx - 1).clamp_min(0)]).argmax(-1)
        gt_seg = ids[b_idx, p_idx] == self.seg_id
        rejected = torch.where(gt_seg, argmax != self.seg_id, argmax == self.rej_id)
        # 2. Re-evaluation: every [REJ] becomes [SEG] and each slot is decoded.
        ids2 = ids.masked_fill(ids == self.rej_id, self.seg_id)
        hidden2 = self._hidden(inputs, ids2, vis, image_tokens)
        refs, warns = [], []
        for row, lab in zip(ids2, labels, strict=True):
            r, w, _ = self.ref_parser(
                row, self.tokenizer, known_units={self.unit}, span_mask=lab != IGNORE_INDEX
            )
            refs.append(r)
            warns.append(w)
        dec = self.unit_decoders[self.unit]
        routing = self.router(hidden2, refs, {self.unit: dec.num_queries}, warns)
        masks: dict[int, Tensor] = {}
        if self.unit in routing.queries:
            rows, q, unit_vis, unit_samples = select_rows(
                routing.queries[self.unit], vis, data_samples
            )
            for b, inst in zip(rows, dec.predict(q, unit_vis, unit_samples), strict=True):
                masks[b] = inst.masks
        for b, sample in enumerate(data_samples):
            self._write_teacher_forced(
                sample, masks.get(b), rejected[b_idx == b], ids[b, slots[b]], routing, b
            )
        return data_samples

    def _write_teacher_forced(
        self, sample: Any, masks: Tensor | None, rejected: Tensor, gt_tokens: Tensor, routing, b
    ) -> None:
        h, w = sample.metainfo['ori_shape']
        num = len(rejected)
        if masks is None or len(masks) != num:  # capacity overflow: undecoded slots stay empty
            full = torch.zeros(num, h, w, dtype=torch.bool)
            if masks is not None:
                full[: len(masks)] = masks[:num]
            decoded = torch.arange(num) < (0 if masks is None else len(masks))
            masks = full
        else:
            decoded = torch.ones(num, dtype=torch.bool)
        rejected = rejected.cpu()
        sample.pred_slots = InstanceData(masks=masks.cpu(), rejected=rejected, decoded=decoded)
        keep = (~rejected).nonzero(as_tuple=True)[0]
        phrases = [r.phrase for r in routing.refs[b]]
        sample.pred_instances = InstanceData(
            labels=[phrases[i] if i < len(phrases) else '' for i in keep.tolist()],
            units=[self.unit] * len(keep),
            group_ids=keep.clone(),
            masks=masks.cpu()[keep],
            scores=torch.ones(len(keep)),
        )
        decided = torch.where(rejected, self.rej_id, self.seg_id).tolist()
        sample.pred_text = ' '.join(self.tokenizer.decode([t]) for t in decided)
        sample.pred_answer = []
        sample.gt_slot_tokens = gt_tokens.cpu()
        sample.warnings = list(routing.warnings[b])
