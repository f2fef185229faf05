# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""Render a record's conversation with templates + TRP and tokenize it, prompt masked from
labels."""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from mmcv.transforms import BaseTransform

from mmrefvlm.datasets.chat_templates import get_chat_template
from mmrefvlm.datasets.conversation_checks import (
    answer_banned_strings,
    check_conversation,
    check_text,
    iter_answer_texts,
    user_banned_strings,
)
from mmrefvlm.datasets.records import TASKS
from mmrefvlm.datasets.template_bank import TemplateBank
from mmrefvlm.registry import TASK_UTILS, TRANSFORMS
from mmrefvlm.tokenization import IMAGE_TOKEN, RefTokenizer, build_tokenizer
from mmrefvlm.trp import build_answer, find_refs, iter_groups, phrase_text

from .loading import SampleLoadError
from .targets import record_error

IGNORE_INDEX = -100


@dataclass(frozen=True)
class RefTarget:
    """The target of one ``<REF>`` token: its units, the instance index (None: image-level), the
    phrase-group id within the sample and the phrase text (for metrics)."""

    units: tuple[str, ...]
    target: int | None
    group_id: int
    phrase: str


def iter_ref_targets(answer: Any, start_group: int = 0) -> Iterator[RefTarget]:
    """``<REF>`` targets of a structured answer in rendering order (via :func:`trp.iter_groups`).

    Group ids number the answer's (triplet, group) pairs from ``start_group``.
    """
    for gid, (_, _, phrase_group, group) in enumerate(iter_groups(answer), start_group):
        n = int(group['n'])
        targets = group.get('targets')
        targets = [None] * n if targets is None else list(targets)
        text = phrase_text(phrase_group)
        if len(targets) != n:
            raise ValueError(f'group of phrase {text!r} has n={n} but {len(targets)} targets')
        for t in targets:
            yield RefTarget(tuple(group['units']), t, gid, text)


def resolve_package_path(path: str) -> str:
    """``'pkg.mod:rel/dir'`` -> ``<folder of pkg.mod>/rel/dir``; other strings are returned as
    is."""
    if ':' not in path or os.path.isabs(path):
        return path
    package, rel = path.split(':', 1)
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ValueError(f'{path!r}: {package!r} is not an importable package')
    return os.path.join(list(spec.submodule_search_locations)[0], rel)


@TRANSFORMS.register_module()
class FormatConversation(BaseTransform):
    """Render and tokenize the conversation.

    Adds ``input_ids`` ((L,) long), ``labels`` ((L,) long, -100 on prompt tokens; in predict mode
    the final answer is left out and labels are all -100), ``label_refs`` (the ``<REF>`` tokens of
    the labels as :func:`mmrefvlm.trp.find_refs` tuples with every valid unit; empty in predict
    mode), ``ref_targets`` (list[RefTarget] in
    ``<REF>`` order: of the supervised answers, or in predict mode of the final answer, kept as
    ground truth for metrics), ``gt_answer`` (final structured answer), ``gt_text`` (its
    rendering) and ``prompt_types``.

    With ``predict=True, allow_open_turn=True`` the conversation may end with a user turn
    (inference on a new question, as ``RefVLMInferencer`` sets it): the prompt then ends with the
    assistant prefix, ``ref_targets`` is empty and ``gt_answer`` / ``gt_text`` are None. Otherwise
    (training, and validation / test records, which need their ground-truth answer) every
    conversation must end with its assistant turn.

    Args:
        tokenizer (dict | RefTokenizer): Tokenizer config (``build_tokenizer`` kwargs) or object.
        chat_template (str | dict): ``'vicuna'``, ``'chatml'``, ``'plain'`` or a dict.
        num_image_tokens (int): Copies of ``<image>`` the model expects (= vision grid h*w).
        num_prompt_tokens (int): Copies of ``[VPT]`` per visual prompt (= k*k of the aggregator).
        cot (bool): Render VD-CoT before each answer. Default True (REF-VLM).
        max_length (int): Longest token sequence; a longer sample is an error (never silently cut,
            which would misalign ``<REF>`` tokens and targets).
        predict (bool): Leave out the final answer (test/val); earlier turns stay as context.
        allow_open_turn (bool): With ``predict=True`` only: also accept a conversation that ends
            with the user's question (no answer in the record; inference). The assistant prompt
            is appended and ``gt_answer`` is None. Training / validation records must end with
            the assistant turn (:func:`conversation_checks.check_conversation`).
        template_dir (str, optional): Folder of template sets (default: the packaged templates).
        extra_template_dirs (Sequence[str]): More template folders (e.g. a plugin's own tasks):
            paths, or ``'package.module:relative/folder'`` resolved inside an importable package
            (works from lazy configs and from any working directory).
        seed (int): Template sampling seed (with the sample index).
        answer_format (dict | Callable, optional): Renders a structured answer as the assistant's
            text, called as ``answer_format(answer, cot=cot) -> str``; a dict is built from
            ``TASK_UTILS``. None (default): TRP (:func:`mmrefvlm.trp.build_answer`). A format for
            another answer language (LISA's ``Sure, it is [SEG].``, GSVA's ``e1:[SEG], e2:[REJ]``)
            must write exactly one reference token per target of :func:`iter_ref_targets`, in
            that order, and the model's ``ref_parser`` must read those tokens back
            (``docs/plugins.md`` §11).
        ref_parser (dict | Callable, optional): Finds the reference tokens of the labels for
            ``label_refs``, with the signature of :func:`mmrefvlm.trp.find_refs` (called with
            ``known_units=None``); a dict is built from ``TASK_UTILS``. None (default): TRP. Give
            the model's ``ref_parser`` here too when ``answer_format`` is not TRP.
    """

    def __init__(
        self,
        tokenizer: dict | RefTokenizer,
        *,
        chat_template: str | dict = 'vicuna',
        num_image_tokens: int,
        num_prompt_tokens: int = 9,
        cot: bool = True,
        max_length: int = 2048,
        predict: bool = False,
        allow_open_turn: bool = False,
        template_dir: str | None = None,
        extra_template_dirs: Sequence[str] = (),
        seed: int = 0,
        answer_format: dict | Callable[..., str] | None = None,
        ref_parser: dict | Callable[..., tuple] | None = None,
    ) -> None:
        if isinstance(tokenizer, Mapping):
            cfg = dict(tokenizer)
            cfg.pop('type', None)
            tokenizer = build_tokenizer(**cfg)
        self.tokenizer: RefTokenizer = tokenizer
        self.chat = get_chat_template(chat_template)
        if num_image_tokens <= 0 or num_prompt_tokens <= 0:
            raise ValueError('num_image_tokens and num_prompt_tokens must be positive')
        self.num_image_tokens = num_image_tokens
        self.num_prompt_tokens = num_prompt_tokens
        self.cot = cot
        self.max_length = max_length
        self.predict = predict
        if allow_open_turn and not predict:
            raise ValueError(
                'allow_open_turn=True needs predict=True: a record without the final answer '
                'cannot be trained or validated on'
            )
        self.allow_open_turn = allow_open_turn
        hf = self.tokenizer.hf
        # answers: every special token (TRP markup, method extras, control tokens); user text:
        # only the control tokens (a method's extra tokens may be part of its prompts)
        self.answer_banned = answer_banned_strings(
            str(t) for t in getattr(hf, 'all_special_tokens', ())
        )
        control = (getattr(hf, f'{name}_token', None) for name in ('bos', 'eos', 'pad', 'unk'))
        self.user_banned = user_banned_strings(str(t) for t in control if t)
        self.templates = TemplateBank(
            template_dir, extra_dirs=[resolve_package_path(d) for d in extra_template_dirs]
        )
        self.seed = seed
        if isinstance(answer_format, Mapping):
            answer_format = TASK_UTILS.build(answer_format)
        if answer_format is not None and not callable(answer_format):
            raise TypeError(f'answer_format must be callable, got {type(answer_format).__name__}')
        self.render_answer: Callable[..., str] = answer_format or build_answer
        if isinstance(ref_parser, Mapping):
            ref_parser = TASK_UTILS.build(ref_parser)
        if ref_parser is not None and not callable(ref_parser):
            raise TypeError(f'ref_parser must be callable, got {type(ref_parser).__name__}')
        self.find_refs: Callable[..., tuple] = ref_parser or find_refs

    # -- rendering ---------------------------------------------------------------------------
    def _user_text(self, turn: dict, task: str, sample_idx: int, rid, field: str) -> str:
        if 'content' in turn:
            text = turn['content']
        else:
            name = turn.get('template', task)
            try:
                index = self.templates.sample_index(name, self.seed, sample_idx)
                text = self.templates.render(name, turn.get('slots', {}), index=index)
            except (ValueError, TypeError, KeyError) as exc:
                raise record_error(rid, field, str(exc)) from exc
        problem = check_text(text, self.user_banned, where='user')
        if problem is not None:
            raise record_error(rid, field, problem)
        return text

    def _check_record(self, results: dict) -> None:
        """The validator's conversation rules (shared functions), with the record id."""
        rid = results.get('id')
        conv = results.get('conversation')
        allow_open = self.predict and self.allow_open_turn
        problems = check_conversation(conv, allow_open_turn=allow_open)
        if problems or not isinstance(conv, list):
            raise record_error(rid, *problems[0])
        for i, turn in enumerate(conv):
            if turn.get('role') == 'system':
                err = check_text(turn['content'], self.user_banned, where='system')
                if err is not None:
                    raise record_error(rid, f'conversation[{i}].content', err)
            elif turn.get('role') == 'assistant':
                for path, text in iter_answer_texts(turn['answer'], f'conversation[{i}].answer'):
                    err = check_text(text, self.answer_banned)
                    if err is not None:
                        raise record_error(rid, path, err)

    def _segments(self, results: dict) -> tuple[list[tuple[str, bool]], list, Any]:
        """(text, supervised) pieces, the supervised answers and the final answer."""
        conv = list(results['conversation'])
        task = results['task']
        rid = results.get('id')
        offset = 1 if conv[0].get('role') == 'system' else 0
        system = self.templates.system(task) if task in self.templates else ''
        if conv and conv[0].get('role') == 'system':
            system = conv.pop(0)['content']
        pieces: list[tuple[str, bool]] = []
        if system:
            pieces.append((self.chat.system.format(system=system), False))
        needs_image = results.get('img') is not None and not any(
            IMAGE_TOKEN in t.get('content', '') for t in conv if t.get('role') == 'user'
        )
        answers, last_answer = [], None
        idx = results.get('sample_idx', 0)
        for i, turn in enumerate(conv):
            field = f'conversation[{i + offset}]'
            if turn.get('role') == 'user':
                text = self._user_text(turn, task, idx, rid, field)
                if needs_image:  # the first user turn holds the image (its template's or ours)
                    text = text if IMAGE_TOKEN in text else f'{IMAGE_TOKEN}\n{text}'
                    needs_image = False
                pieces.append((self.chat.user.format(content=text), False))
            else:  # the assistant: check_conversation has fixed the roles and their order
                last_answer = turn['answer']
                pieces.append((self.chat.assistant, False))
                if self.predict and i == len(conv) - 1:
                    break
                try:
                    pieces.append((self.render_answer(turn['answer'], cot=self.cot), True))
                except (ValueError, TypeError) as err:
                    raise record_error(rid, f'{field}.answer', str(err)) from err
                pieces.append(('<EOS>', True))
                pieces.append((self.chat.turn_sep, False))
                answers.append(turn['answer'])
        if conv[-1].get('role') == 'user':  # an open turn (predict mode): the model answers
            pieces.append((self.chat.assistant, False))
            last_answer = None  # no ground truth: earlier answers are history, not targets
        return pieces, answers, last_answer

    # -- tokenization ------------------------------------------------------------------------
    def _expand(self, ids: list[int]) -> list[int]:
        out: list[int] = []
        img, vpt = self.tokenizer.ids.image, self.tokenizer.ids.vpt
        for t in ids:
            if t == img:
                out.extend([img] * self.num_image_tokens)
            elif t == vpt:
                out.extend([vpt] * self.num_prompt_tokens)
            else:
                out.append(t)
        return out

    def _check_task(self, results: dict) -> None:
        task = results.get('task')
        if not isinstance(task, str) or (task not in TASKS and task not in self.templates):
            raise record_error(
                results.get('id'),
                'task',
                f'unknown task {task!r}; known tasks: '
                f'{sorted(set(TASKS) | set(self.templates.names))}',
            )

    def transform(self, results: dict) -> dict:  # noqa: D102
        self._check_task(results)
        self._check_record(results)
        pieces, answers, last_answer = self._segments(results)
        ids: list[int] = [] if self.tokenizer.ids.bos is None else [self.tokenizer.ids.bos]
        labels: list[int] = [IGNORE_INDEX] * len(ids)
        for text, supervised in pieces:
            try:
                text.encode('utf-8')
            except UnicodeEncodeError as err:  # e.g. a lone surrogate "\ud800" from JSON
                raise SampleLoadError(
                    f'record {results.get("id")}: text is not valid Unicode '
                    f'({err.reason} at {err.start}): {text[:60]!r}'
                ) from err
            piece = (
                [self.tokenizer.ids.eos]
                if text == '<EOS>'
                else self._expand(self.tokenizer.encode(text))
            )
            ids.extend(piece)
            labels.extend(piece if supervised else [IGNORE_INDEX] * len(piece))
        rid = results.get('id')
        if len(ids) > self.max_length:
            raise SampleLoadError(
                f'record {rid}: {len(ids)} tokens exceed max_length='
                f'{self.max_length}; raise max_length or shorten the sample'
            )
        n_vpt = ids.count(self.tokenizer.ids.vpt) // self.num_prompt_tokens
        if n_vpt != len(results.get('visual_prompts') or ()):
            raise record_error(
                rid,
                'visual_prompts',
                f'{n_vpt} [VPT] placeholders but '
                f'{len(results.get("visual_prompts") or ())} visual prompts',
            )
        n_img = ids.count(self.tokenizer.ids.image) // self.num_image_tokens
        if n_img > 1 or (n_img == 1) != (results.get('img') is not None):
            raise record_error(
                rid,
                'conversation',
                f'needs exactly one <image> when it has an image and none otherwise, found {n_img}',
            )
        # Training: targets of every supervised answer. Predict: the final (unseen) answer's
        # targets, kept as ground truth for the metrics (none when the conversation ends with
        # the question: an open turn).
        if self.predict:
            target_answers = [] if last_answer is None else [last_answer]
        else:
            target_answers = answers
        refs: list[RefTarget] = []
        gid = 0
        for ans in target_answers:
            try:
                refs.extend(iter_ref_targets(ans, start_group=gid))
            except (ValueError, TypeError, KeyError) as err:
                raise record_error(rid, 'answer', str(err)) from err
            gid += sum(1 for _ in iter_groups(ans))
        # The <REF> tokens of the labels, parsed once here instead of in every training step.
        label_refs = (
            []
            if self.predict
            else self.find_refs(
                ids, self.tokenizer, known_units=None, span_mask=[t != IGNORE_INDEX for t in labels]
            )[0]
        )
        results.update(
            input_ids=torch.tensor(ids, dtype=torch.long),
            labels=torch.tensor(labels, dtype=torch.long),
            label_refs=label_refs,
            ref_targets=refs,
            gt_answer=last_answer,
            gt_text=None if last_answer is None else self.render_answer(last_answer, cot=self.cot),
            prompt_types=[p['type'] for p in results.get('visual_prompts') or ()],
        )
        return results
