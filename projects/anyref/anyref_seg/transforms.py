# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""AnyRef data: records -> AnyRef prompts (references between begin/end tokens) and answers
(``{expression}<obj>.``), reference inputs loaded for the input encoders."""

from __future__ import annotations

import copy
import os.path as osp
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from mmcv.transforms import BaseTransform
from PIL import Image

from mmrefvlm.datasets.demo import read_wav
from mmrefvlm.datasets.records import with_system_turn
from mmrefvlm.datasets.transforms import PackRefVLMInputs, TargetError, union_target_instance
from mmrefvlm.datasets.transforms.images import CLIP_MEAN_RGB, pad_to_square, resize_square
from mmrefvlm.registry import TASK_UTILS, TRANSFORMS
from mmrefvlm.trp import iter_groups, phrase_text

#: AnyRef's special tokens (§3.1): reference brackets, their feature placeholders, the output.
ANYREF_TOKENS = (
    '<obj>',
    '<img_ref>',
    '</img_ref>',
    '<img_feat>',
    '<aud_ref>',
    '</aud_ref>',
    '<aud_feat>',
)
#: task -> template set of the user turn (the project's ``templates/`` folder).
TEMPLATES = {
    'rec': 'anyref_res',
    'res': 'anyref_res',
    'gres': 'anyref_res',
    'reg': 'anyref_reg',
    'image_ref_seg': 'image_ref_seg',
    'audio_ref_seg': 'audio_ref_seg',
}


def visual_ref_text(num_tokens: int) -> str:
    """``<img_ref>`` + ``num_tokens`` x ``<img_feat>`` + ``</img_ref>``."""
    return '<img_ref>' + '<img_feat>' * num_tokens + '</img_ref>'


def audio_ref_text(num_tokens: int) -> str:
    """``<aud_ref>`` + ``num_tokens`` x ``<aud_feat>`` + ``</aud_ref>``."""
    return '<aud_ref>' + '<aud_feat>' * num_tokens + '</aud_ref>'


@TRANSFORMS.register_module()
class AnyRefConversation(BaseTransform):
    """Rewrite a record into AnyRef's format and load its references.

    * ``rec`` / ``res`` / ``gres``: one ``<obj>`` per expression; its target is the union of the
      referents' masks (an instance appended to the record), all-zero when the expression matches
      nothing (as LISA fine-tuned on gRefCOCO; AnyRef has no rejection token). User turn:
      ``Can you segment <expr> in this image?``.
    * ``reg``: the prompted object's box becomes a **box reference** (``visual_refs``:
      ``{'box': normalised square-frame box}``) written as ``<img_ref>`` 16 x ``<img_feat>``
      ``</img_ref>``; the answer is the description followed by ``<obj>``, the object's mask its
      target (the mask supervision of REG, §3.2); ``gt_captions`` holds the description.
    * ``image_ref_seg``: the exemplar image, cropped to its box (+ ``crop_margin``), square-padded
      and resized to the CLIP input, is an **image reference**.
    * ``audio_ref_seg``: the sound (``audio_refs``: float waveform) between ``<aud_ref>`` and
      ``</aud_ref>`` with ``audio_tokens`` x ``<aud_feat>``.

    Needs ``LoadRecordImage`` and ``PrepareImages`` before it (the square size).

    Args:
        image_size (int): CLIP input side for image references.
        visual_tokens (int): ``<img_feat>`` per visual reference. Defaults to 16.
        audio_tokens (int): ``<aud_feat>`` per sound. Defaults to 3.
        system (str, optional): System prompt of every task.
        crop_margin (float): Context around an exemplar box, as a fraction of its size.
            Defaults to 0.1.
        sample_rate (int): Sample rate of the audio encoder; a WAV reference with another rate
            is an error (the encoder's mel bands would be wrong). Defaults to 8000 (the demo's
            sounds and ``SpectrogramAudioEncoder``'s default).
    """

    def __init__(
        self,
        image_size: int,
        *,
        visual_tokens: int = 16,
        audio_tokens: int = 3,
        system: str | None = None,
        crop_margin: float = 0.1,
        sample_rate: int = 8000,
    ) -> None:
        self.image_size, self.visual_tokens, self.audio_tokens = (
            image_size,
            visual_tokens,
            audio_tokens,
        )
        self.system, self.crop_margin, self.sample_rate = system, crop_margin, sample_rate

    # ------------------------------------------------------------------ targets
    def _expressions(self, answer: Any, instances: list, hw, rid) -> list:
        out: list = []
        for _, group_index, pg, _ in iter_groups(answer):
            if group_index:  # one expression per phrase group, at its first group
                continue
            targets = sorted(
                {int(t) for g in pg['groups'] for t in g.get('targets') or [] if t is not None}
            )
            if len(targets) == 1:
                index = targets[0]
            else:  # several referents or none: their union, all-zero for "nothing"
                instances.append(union_target_instance(instances, targets, hw, rid))
                index = len(instances) - 1
            group = {'units': ['mask'], 'n': 1, 'targets': [index]}
            out.append({'phrase': phrase_text(pg), 'groups': [group]})
        return out

    # ------------------------------------------------------------------ references
    def _exemplar(self, results: dict, ref: dict) -> torch.Tensor:
        img = np.asarray(Image.open(osp.join(results['data_root'], ref['path'])).convert('RGB'))
        x1, y1, x2, y2 = ref.get('box') or [0, 0, img.shape[1], img.shape[0]]
        mx, my = (x2 - x1) * self.crop_margin, (y2 - y1) * self.crop_margin
        x1, y1 = int(max(np.floor(x1 - mx), 0)), int(max(np.floor(y1 - my), 0))
        x2 = int(min(np.ceil(x2 + mx), img.shape[1]))
        y2 = int(min(np.ceil(y2 + my), img.shape[0]))
        crop = resize_square(pad_to_square(img[y1:y2, x1:x2], CLIP_MEAN_RGB), self.image_size)
        return torch.from_numpy(np.ascontiguousarray(crop.transpose(2, 0, 1)))

    def transform(self, results: dict) -> dict:  # noqa: D102
        rid, task = results.get('id'), results['task']
        if task not in TEMPLATES:
            raise ValueError(f'record {rid}: AnyRef has no prompt for task {task!r}')
        hw = (int(results['image']['height']), int(results['image']['width']))
        conv = copy.deepcopy(results['conversation'])
        instances = copy.deepcopy(results.get('instances') or [])
        visual_refs: list[dict] = []
        audio_refs: list[torch.Tensor] = []
        slots: dict[str, str] = {}
        user = next(t for t in conv if t.get('role') == 'user')
        answer_turn = next(t for t in reversed(conv) if t.get('role') == 'assistant')
        if task == 'reg':
            vp = (results.get('visual_prompts') or [None])[0]
            if vp is None or vp.get('instance') is None:
                raise TargetError(f'record {rid}: a reg record needs a prompt naming its instance')
            inst = int(vp['instance'])
            side = float(results['square_size'])
            visual_refs.append({'box': torch.tensor(instances[inst]['bbox']) / side})
            slots['ref'] = visual_ref_text(self.visual_tokens)
            desc = answer_turn['answer']
            answer_turn['answer'] = [
                {'phrase': desc, 'groups': [{'units': ['mask'], 'n': 1, 'targets': [inst]}]}
            ]
            results['gt_captions'] = [desc]
            results['visual_prompts'] = []
        elif task in ('image_ref_seg', 'audio_ref_seg'):
            refs = results.get('references') or []
            if len(refs) != 1:  # the prompt has one reference slot
                raise TargetError(
                    f'record {rid}: {task} needs exactly 1 reference, got {len(refs)}'
                )
            ref = refs[0]
            if ref['type'] == 'image':
                visual_refs.append({'image': self._exemplar(results, ref)})
                slots['ref'] = visual_ref_text(self.visual_tokens)
            else:
                path = osp.join(results['data_root'], ref['path'])
                wave, rate = read_wav(path)
                if rate != self.sample_rate:
                    raise TargetError(
                        f'record {rid}: {path} is sampled at {rate} Hz, the audio encoder at '
                        f'{self.sample_rate} Hz'
                    )
                audio_refs.append(torch.from_numpy(wave))
                slots['ref'] = audio_ref_text(self.audio_tokens)
            answer_turn['answer'] = self._expressions(answer_turn['answer'], instances, hw, rid)
        else:
            slots['expr'] = user.get('slots', {}).get('expr', '')
            answer_turn['answer'] = self._expressions(answer_turn['answer'], instances, hw, rid)
        conv[conv.index(user)] = {'role': 'user', 'template': TEMPLATES[task], 'slots': slots}
        if self.system is None:  # the template set's system prompt, not the record's task's
            conv = [t for t in conv if t.get('role') != 'system']
        else:
            conv = with_system_turn(conv, self.system)
        results.update(conversation=conv, instances=instances)
        results['visual_refs'], results['audio_refs'] = visual_refs, audio_refs
        return results


@TASK_UTILS.register_module()
class ObjAnswerFormat:
    """AnyRef answers: ``{expression}<obj>`` per phrase group, joined by ``', '``, then ``'.'``
    (``"the red circle<obj>."``; the public code's ``"{e1}<obj>, {e2}<obj>."``)."""

    def __init__(self, token: str = '<obj>') -> None:
        self.token = token

    def __call__(self, answer: str | Sequence[Any], cot: bool = False) -> str:
        """The answer text (``cot`` ignored)."""
        if isinstance(answer, str):
            return answer
        parts = []
        for _, _, pg, group in iter_groups(answer):
            if int(group['n']) != 1:
                raise ValueError(
                    f'{phrase_text(pg)!r}: one <obj> per expression, got n={group["n"]}'
                )
            parts.append(phrase_text(pg) + self.token)
        if not parts:
            raise ValueError(f'answer {answer!r} has no expression')
        return ', '.join(parts) + '.'


@TRANSFORMS.register_module()
class PackAnyRefInputs(PackRefVLMInputs):
    """:class:`PackRefVLMInputs`, then the references (``visual_refs``, ``audio_refs``),
    ``gt_captions`` and SAM's image (``inputs['images'][sam_key]`` -> ``sam_image``) move into
    the data sample.

    Args:
        sam_key (str): Name of SAM's image in ``PrepareImages``. Defaults to ``'sam'``.
    """

    def __init__(self, sam_key: str = 'sam') -> None:
        self.sam_key = sam_key

    def transform(self, results: dict) -> dict:  # noqa: D102
        packed = super().transform(results)
        sample = packed['data_samples']
        sample.visual_refs = list(results.get('visual_refs') or [])
        sample.audio_refs = list(results.get('audio_refs') or [])
        if results.get('gt_captions'):
            sample.gt_captions = list(results['gt_captions'])
        images = packed['inputs']['images']
        if self.sam_key in images:
            sample.sam_image = images.pop(self.sam_key)
        return packed
