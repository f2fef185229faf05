# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""SAM4MLLM data: referring records -> text answers that are SAM prompts (PPG, PQPP), and
(image, prompt, mask) samples that fine-tune SAM on its own."""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from mmcv.transforms import BaseTransform
from mmengine.structures import BaseDataElement

from mmrefvlm.datasets.geometry import decode_mask
from mmrefvlm.datasets.records import with_system_turn
from mmrefvlm.datasets.transforms import MaskTarget, TargetError
from mmrefvlm.registry import TASK_UTILS, TRANSFORMS
from mmrefvlm.trp import iter_groups

from .prompt_text import PromptCodec, PromptGroup

VARIANTS = ('ppg', 'pqpp')
#: The paper's round-1 object-count hints: one, one or more, none or more.
COUNTS = ('1', '1+', '0+')
#: The round-2 question of PQPP (the public code lists points and answers "YesNo..."; here one
#: point per question, so that inference can ask the 25 grid points in one batched pass).
POINT_QUESTION = 'Is the point {point} on the object in {box}?'
POINT_ANSWERS = ('Yes.', 'No.')


def sample_points(
    mask: np.ndarray,
    box: Sequence[float],
    num_pos: int,
    num_neg: int,
    rng: np.random.Generator,
) -> list[tuple[float, float, int]]:
    """Random labelled points: ``num_pos`` pixel centres on the mask, ``num_neg`` off it inside
    the box (anywhere off the mask when the box has no such pixel), without repeats where
    possible.

    Args:
        mask (np.ndarray): (H, W) bool object mask.
        box (Sequence[float]): ``x1, y1, x2, y2`` pixels.
        num_pos (int): Points on the object.
        num_neg (int): Points off the object.
        rng (np.random.Generator): Randomness.

    Returns:
        list[tuple[float, float, int]]: ``(x, y, label)`` in pixels, positives first.
    """
    h, w = mask.shape
    x1, y1 = int(np.clip(np.floor(box[0]), 0, w)), int(np.clip(np.floor(box[1]), 0, h))
    x2, y2 = int(np.clip(np.ceil(box[2]), 0, w)), int(np.clip(np.ceil(box[3]), 0, h))
    inside = np.zeros_like(mask)
    inside[y1 : max(y2, y1 + 1), x1 : max(x2, x1 + 1)] = True
    out: list[tuple[float, float, int]] = []
    for num, pool, label in (
        (num_pos, mask, 1),
        (num_neg, inside & ~mask if (inside & ~mask).any() else ~mask, 0),
    ):
        ys, xs = np.nonzero(pool)
        if num <= 0 or len(ys) == 0:
            continue
        pick = rng.choice(len(ys), size=num, replace=len(ys) < num)
        out += [(float(xs[i]) + 0.5, float(ys[i]) + 0.5, label) for i in pick]
    return out


def _targets(answer: Any) -> list[tuple[str, list[int]]]:
    """(phrase text, target instances) of every phrase group of a structured answer."""
    from mmrefvlm.trp import phrase_text

    return [
        (phrase_text(pg), [int(t) for t in (g.get('targets') or []) if t is not None])
        for _, _, pg, g in iter_groups(answer)
    ]


@TRANSFORMS.register_module()
class SAM4MLLMConversation(BaseTransform):
    """Rewrite a REC / RES / GRES record into SAM4MLLM's dialogue.

    The answer becomes one mask group per expression whose text is the SAM prompt of its
    targets (``prompt_text``, rendered by :class:`SamPromptAnswerFormat`): per target instance
    (in the record's order) its box in coordinate bins, and for PPG ``points`` labelled points;
    an expression without target answers ``no_object_text``. The group keeps its targets, so
    the pipeline still builds ground-truth masks for the metrics.

    * ``variant='ppg'``: box + 2 positive + 1 negative points. The points come from ``labels``
      (``{record id: [[[x, y, label], ...] per target], ...}`` in pixels, made offline with SAM in
      the loop by ``projects/sam4mllm/tools/make_ppg_labels.py``: 64 random groups per target,
      the top 16 by SAM's IoU, one of them at random) or, for records without labels, sampled
      at random from the mask (``points``).
    * ``variant='pqpp'``: round 1 answers boxes only; in training, ``num_point_turns`` round-2
      turns follow, each asking about one random point inside a target's box
      (:data:`POINT_QUESTION`) and answered ``Yes.`` / ``No.`` (on / off the mask); in predict
      mode only round 1 is kept (the model asks round 2 itself).

    The user turn switches to ``template`` (its ``expr`` slot is kept, its ``count`` slot is
    ``count``) and the system turn to ``system``, so that REC / RES / GRES records share one
    prompt. ``count`` is the paper's round-1 hint of how many objects the expression may refer
    to: ``'1'`` (one), ``'1+'`` (one or more), ``'0+'`` (none or more; the paper's training
    prompt); a dataset that knows its expressions (RES: one object; GRES: any number, maybe
    none) can say so.

    Args:
        variant (str): ``'ppg'`` or ``'pqpp'``.
        num_bins (int): Coordinate bins (see :class:`PromptCodec`). Defaults to 1000.
        template (str, optional): Template set of the user turn. None keeps the record's.
        count (str): The ``count`` slot: ``'1'``, ``'1+'`` or ``'0+'``. Defaults to ``'0+'``.
        system (str, optional): System prompt. None keeps the task's.
        points (tuple[int, int]): PPG (positive, negative) points. Defaults to (2, 1).
        labels (str | Mapping, optional): PPG labels (JSON path or dict).
        num_point_turns (int): PQPP round-2 turns in training. Defaults to 4.
        predict (bool): Predict mode (PQPP: round 1 only). Defaults to False.
        seed (int): Sampling seed (with the sample index). Defaults to 0.
    """

    def __init__(
        self,
        variant: str,
        *,
        num_bins: int = 1000,
        template: str | None = None,
        count: str = '0+',
        system: str | None = None,
        points: tuple[int, int] = (2, 1),
        labels: str | Mapping[str, Any] | None = None,
        num_point_turns: int = 4,
        predict: bool = False,
        seed: int = 0,
    ) -> None:
        if variant not in VARIANTS:
            raise ValueError(f'variant must be one of {VARIANTS}, got {variant!r}')
        self.variant, self.codec = variant, PromptCodec(num_bins)
        if count not in COUNTS:
            raise ValueError(f'count must be one of {COUNTS}, got {count!r}')
        self.template, self.system, self.count = template, system, count
        self.points, self.num_point_turns = tuple(points), int(num_point_turns)
        self.predict, self.seed = predict, seed
        if isinstance(labels, str):
            with open(labels, encoding='utf-8') as f:
                labels = json.load(f)
        self.labels: Mapping[str, Any] = labels or {}

    def _group(self, inst: dict, hw: tuple[int, int], rid: str, k: int, rng) -> PromptGroup:
        box = self.codec.box_bins(inst['bbox'], hw)
        if self.variant == 'pqpp':
            return PromptGroup(box)
        given = self.labels.get(str(rid))
        if given is not None and k < len(given):
            pts = [(float(x), float(y), int(lab)) for x, y, lab in given[k]]
        else:
            mask = decode_mask(inst['mask'], *hw)
            pts = sample_points(mask, inst['bbox'], *self.points, rng)
        bins = [
            (self.codec.to_bin(x, hw[1]), self.codec.to_bin(y, hw[0]), lab) for x, y, lab in pts
        ]
        return PromptGroup(box, tuple(bins))

    def _point_turns(self, insts: list[dict], hw: tuple[int, int], rng) -> list[dict]:
        turns = []
        for t in range(self.num_point_turns if insts else 0):
            inst = insts[t % len(insts)]
            x1, y1, x2, y2 = inst['bbox']
            x, y = rng.uniform(x1, x2), rng.uniform(y1, y2)
            mask = decode_mask(inst['mask'], *hw)
            on = bool(mask[min(int(y), hw[0] - 1), min(int(x), hw[1] - 1)])
            point = self.codec.format_xy(self.codec.to_bin(x, hw[1]), self.codec.to_bin(y, hw[0]))
            box = self.codec.format_box(self.codec.box_bins(inst['bbox'], hw))
            turns.append({'role': 'user', 'content': POINT_QUESTION.format(point=point, box=box)})
            turns.append({'role': 'assistant', 'answer': POINT_ANSWERS[0 if on else 1]})
        return turns

    def transform(self, results: dict) -> dict:  # noqa: D102
        rid = results.get('id')
        hw = (int(results['image']['height']), int(results['image']['width']))
        rng = np.random.default_rng([self.seed, int(results.get('sample_idx', 0)), 7])
        conversation = copy.deepcopy(results['conversation'])
        instances = results.get('instances') or []
        point_insts: list[dict] = []
        for turn in conversation:
            if turn.get('role') == 'user' and 'template' in turn and self.template:
                turn['template'] = self.template
                turn['slots'] = {**turn.get('slots', {}), 'count': self.count}
            if turn.get('role') != 'assistant' or isinstance(turn.get('answer'), str):
                continue
            groups = []
            for phrase, targets in _targets(turn['answer']):
                insts = [instances[t] for t in targets if 0 <= t < len(instances)]
                if len(insts) != len(targets) or any('bbox' not in i for i in insts):
                    raise TargetError(f'record {rid}: a target has no instance box')
                prompts = [self._group(i, hw, rid, k, rng) for k, i in enumerate(insts)]
                text = self.codec.format_groups(prompts, with_points=self.variant == 'ppg')
                group = {'units': ['mask'], 'n': len(targets), 'targets': targets}
                groups.append({'phrase': phrase, 'groups': [dict(group, prompt_text=text)]})
                point_insts += insts
            turn['answer'] = groups
        if self.variant == 'pqpp' and not self.predict:
            conversation += self._point_turns(point_insts, hw, rng)
        results['conversation'] = with_system_turn(conversation, self.system)
        return results


@TASK_UTILS.register_module()
class SamPromptAnswerFormat:
    """Render :class:`SAM4MLLMConversation` answers: the ``prompt_text`` of each group, joined by a
    space (the ``answer_format`` of ``FormatConversation``; plain-string answers pass through)."""

    def __call__(self, answer: str | Sequence[Any], cot: bool = False) -> str:
        """The answer text (``cot`` is ignored: SAM4MLLM has no VD-CoT)."""
        if isinstance(answer, str):
            return answer
        texts = [g.get('prompt_text') for _, _, _, g in iter_groups(answer)]
        if not texts or any(t is None for t in texts):
            raise ValueError(
                f'answer {answer!r} has groups without prompt_text: run SAM4MLLMConversation first'
            )
        return ' '.join(texts)


@TRANSFORMS.register_module()
class SamPromptSample(BaseTransform):
    """One (image, box + points, mask) sample for fine-tuning SAM: a random instance of the
    record, its box jittered (as an MLLM's box is imprecise), random labelled points.

    Needs ``PrepareImages(sizes={key: S})`` before it. Emits ``dict(inputs={}, data_samples=...)``
    with ``sam_image`` (3, S, S) uint8, ``prompt_box`` (4,) and ``prompt_points`` (P, 3) float in
    SAM-input pixels, ``gt_mask`` (size, size) bool over SAM's square frame.

    Args:
        size (int): Side of the mask target. Defaults to 64.
        key (str): Image name in ``PrepareImages``. Defaults to ``'sam'``.
        max_pos (int): Most positive points (uniform 0..max_pos). Defaults to 4.
        max_neg (int): Most negative points. Defaults to 3.
        box_jitter (float): Each box side moves by up to this fraction of the object's extent.
            Defaults to 0.1.
        seed (int): Sampling seed (with the sample index). Defaults to 0.
    """

    def __init__(
        self,
        size: int = 64,
        *,
        key: str = 'sam',
        max_pos: int = 4,
        max_neg: int = 3,
        box_jitter: float = 0.1,
        seed: int = 0,
    ) -> None:
        self.target = MaskTarget(size)
        self.key, self.max_pos, self.max_neg = key, max_pos, max_neg
        self.box_jitter, self.seed = box_jitter, seed

    def transform(self, results: dict) -> dict:  # noqa: D102
        rng = np.random.default_rng([self.seed, int(results.get('sample_idx', 0)), 11])
        insts = [i for i in results.get('instances') or [] if i.get('mask') and i.get('bbox')]
        if not insts:
            raise TargetError(f'record {results.get("id")}: no instance with a mask and a box')
        inst = insts[int(rng.integers(len(insts)))]
        h, w = results['ori_shape']
        x1, y1, x2, y2 = inst['bbox']
        jit = rng.uniform(-1, 1, 4) * self.box_jitter * np.array([x2 - x1, y2 - y1] * 2)
        box = np.array([x1, y1, x2, y2]) + jit
        box = np.clip(box, 0, [w, h, w, h])
        pts = sample_points(
            decode_mask(inst['mask'], h, w),
            inst['bbox'],
            int(rng.integers(self.max_pos + 1)),
            int(rng.integers(self.max_neg + 1)),
            rng,
        )
        image = results['images'][self.key]
        scale = image.shape[-1] / results['square_size']
        sample = BaseDataElement()
        sample.sam_image = image
        sample.prompt_box = torch.tensor(box * scale, dtype=torch.float32)
        sample.prompt_points = torch.tensor(
            [(x * scale, y * scale, lab) for x, y, lab in pts], dtype=torch.float32
        ).reshape(-1, 3)
        sample.gt_mask = self.target.build([inst], results)['masks'][0]
        sample.set_metainfo(dict(record_id=results.get('id'), sample_idx=results.get('sample_idx')))
        return dict(inputs={}, data_samples=sample)
