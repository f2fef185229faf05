# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""Checks of a record's conversation shared by the validator and ``FormatConversation``.

* :func:`check_conversation`: the turn structure (an optional system turn, then user and
  assistant turns alternating from a user turn and ending with an assistant turn) and the form
  of each turn. A conversation that ends with a user turn is an *open turn*: it is what a user
  asks at inference, so it is accepted only with ``allow_open_turn=True`` (predict mode). In
  training and validation records it would leave the answer without supervision, and in
  predict mode a conversation that does not end where the model should answer leaks the
  expected answer into the prompt.
* :func:`check_text`: text must not spell a tokenizer's special tokens. In an answer, ``</s>``
  would become an end-of-sequence token in the middle of the label; TRP markup and placeholders
  are rendered by the pipeline, never written in answers.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from mmrefvlm.tokenization.special_tokens import (
    IMAGE_TOKEN,
    PAD_TOKEN,
    TRP_SPECIAL_TOKENS,
    VPT_TOKEN,
)

__all__ = [
    'DEFAULT_SPECIAL_STRINGS',
    'ANSWER_MARKUP',
    'answer_banned_strings',
    'user_banned_strings',
    'check_conversation',
    'check_text',
    'iter_answer_texts',
]

#: Special-token strings of common base tokenizers (Llama / Vicuna, GPT-2 / Qwen / SmolLM, ChatML,
#: Llama 3, Gemma) and of mmrefvlm's own: refused in record text whatever the configured tokenizer.
DEFAULT_SPECIAL_STRINGS: tuple[str, ...] = (
    '<s>',
    '</s>',
    '<unk>',
    '<pad>',
    PAD_TOKEN,
    '<bos>',
    '<eos>',
    '<|endoftext|>',
    '<|im_start|>',
    '<|im_end|>',
    '<|begin_of_text|>',
    '<|end_of_text|>',
    '<|eot_id|>',
    '<|pad|>',
)
#: What the pipeline renders itself and an answer must not spell: TRP markup and placeholders.
ANSWER_MARKUP: tuple[str, ...] = (IMAGE_TOKEN, VPT_TOKEN) + tuple(
    t for t in TRP_SPECIAL_TOKENS if t not in (IMAGE_TOKEN, VPT_TOKEN)
)


def answer_banned_strings(extra: Iterable[str] = ()) -> tuple[str, ...]:
    """Strings answer text must not contain: markup, common special tokens and ``extra`` (the
    configured tokenizer's special tokens)."""
    return tuple(dict.fromkeys((*ANSWER_MARKUP, *DEFAULT_SPECIAL_STRINGS, *extra)))


def user_banned_strings(extra: Iterable[str] = ()) -> tuple[str, ...]:
    """Strings user and system text must not contain: the tokenizer's control tokens (BOS, EOS,
    pad, unk, chat-role markers). ``<image>``, ``[VPT]`` and TRP tokens stay allowed there: they
    are placeholders or reach the prompt unsupervised."""
    allowed = set(TRP_SPECIAL_TOKENS)
    return tuple(t for t in dict.fromkeys((*DEFAULT_SPECIAL_STRINGS, *extra)) if t not in allowed)


def check_text(text: Any, banned: Iterable[str], *, where: str = 'answer') -> str | None:
    """The problem of one text piece, or None.

    Args:
        text (Any): The text (a non-string is reported).
        banned (Iterable[str]): Strings it must not contain.
        where (str): ``'answer'`` or ``'user'`` (wording of the message).

    Returns:
        str | None: The message naming the first banned string found.
    """
    if not isinstance(text, str):
        return f'{where} text must be a string, got {type(text).__name__}'
    for token in banned:
        if token in text:
            if token in ANSWER_MARKUP:
                return (
                    f'{where} text contains {token!r}; answers hold structure, the TRP builder '
                    'renders the markup'
                )
            return (
                f'{where} text contains the special-token string {token!r}, which the tokenizer '
                'turns into a control token (e.g. an end of sequence mid-sequence); remove it'
            )
    return None


def iter_answer_texts(answer: Any, path: str) -> Iterator[tuple[str, str]]:
    """``(field path, text)`` of every text piece of an answer: plain segments and flat phrases.

    Malformed parts are skipped (the structure is checked elsewhere).
    """
    if isinstance(answer, str):
        yield path, answer
        return
    if not isinstance(answer, list):
        return
    for k, seg in enumerate(answer):
        sp = f'{path}[{k}]'
        if isinstance(seg, str):
            yield sp, seg
        elif isinstance(seg, dict):
            phrase = seg.get('phrase')
            if isinstance(phrase, str):
                yield f'{sp}.phrase', phrase
            elif isinstance(phrase, list):
                yield from iter_answer_texts(phrase, f'{sp}.phrase')


def _check_user(turn: dict, path: str) -> list[tuple[str, str]]:
    has_content, has_template = 'content' in turn, 'template' in turn
    if has_content == has_template:
        return [(path, 'a user turn has either "content" (text) or "template" (+ "slots")')]
    if has_content:
        if not isinstance(turn['content'], str):
            return [(f'{path}.content', f'must be a string, got {turn["content"]!r}')]
        return []
    out = []
    slots = turn.get('slots', {})
    if not isinstance(slots, dict) or not all(isinstance(v, str) for v in slots.values()):
        out.append((f'{path}.slots', 'must be an object of string values'))
    if not isinstance(turn['template'], str):
        out.append((f'{path}.template', f'must be a template set name, got {turn["template"]!r}'))
    return out


def check_conversation(conv: Any, *, allow_open_turn: bool = False) -> list[tuple[str, str]]:
    """Problems of a conversation's turn structure, as ``(field path, message)``.

    Args:
        conv (Any): The record's ``conversation``.
        allow_open_turn (bool): Accept a final user turn (the question to answer at inference).
            Only predict mode sets it; training and validation records must end with the
            assistant turn. Default False.

    Returns:
        list[tuple[str, str]]: Empty when the structure is valid. Answer *content* (phrases,
        groups, targets) is checked by the validator's answer rules and the TRP builder.
    """
    if not isinstance(conv, list) or not conv:
        return [('conversation', 'required non-empty list of turns')]
    out: list[tuple[str, str]] = []
    start = 0
    if isinstance(conv[0], dict) and conv[0].get('role') == 'system':
        if not isinstance(conv[0].get('content'), str):
            out.append(('conversation[0].content', 'a system turn needs string content'))
        start = 1
    turns = conv[start:]
    if not turns:
        out.append(('conversation', 'needs at least one user and one assistant turn'))
    for k, turn in enumerate(turns):
        path = f'conversation[{k + start}]'
        want = 'user' if k % 2 == 0 else 'assistant'
        role = turn.get('role') if isinstance(turn, dict) else None
        if role != want:
            out.append(
                (
                    f'{path}.role',
                    f'expected {want!r} (turns alternate, starting with user), got {role!r}',
                )
            )
        elif role == 'user':
            out.extend(_check_user(turn, path))
        else:
            answer = turn.get('answer')
            if not isinstance(answer, str) and not (isinstance(answer, list) and answer):
                out.append((f'{path}.answer', 'must be a string or a non-empty list of segments'))
    if turns and len(turns) % 2 and not allow_open_turn:
        out.append(
            (
                'conversation',
                'must end with an assistant turn (a final user turn is an open question, '
                'accepted only in predict mode with allow_open_turn=True)',
            )
        )
    return out
