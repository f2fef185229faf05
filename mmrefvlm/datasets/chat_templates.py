# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""Chat templates: how system, user and assistant turns become one token stream."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ChatTemplate:
    """Strings around each turn. ``{system}`` / ``{content}`` are filled in; the tokenizer's EOS
    token ends every assistant answer (and is supervised), so the model learns to stop.

    Attributes:
        system (str): Format of the system turn.
        user (str): Format of a user turn.
        assistant (str): Prefix of an assistant turn (part of the prompt, not supervised).
        turn_sep (str): Text after an assistant answer's EOS (not supervised).
    """

    system: str
    user: str
    assistant: str
    turn_sep: str


CHAT_TEMPLATES: dict[str, ChatTemplate] = {
    # Vicuna v1.1 style (REF-VLM uses Vicuna-7B).
    'vicuna': ChatTemplate(
        system='{system}\n', user='USER: {content} ', assistant='ASSISTANT: ', turn_sep='\n'
    ),
    # ChatML (SmolLM2, Qwen); the EOS of these tokenizers is <|im_end|>.
    'chatml': ChatTemplate(
        system='<|im_start|>system\n{system}<|im_end|>\n',
        user='<|im_start|>user\n{content}<|im_end|>\n',
        assistant='<|im_start|>assistant\n',
        turn_sep='\n',
    ),
    # Minimal template for the tiny demo models (fewer tokens per sample).
    'plain': ChatTemplate(
        system='{system}\n', user='Q: {content}\n', assistant='A: ', turn_sep='\n'
    ),
}


def get_chat_template(template: str | ChatTemplate | dict) -> ChatTemplate:
    """Resolve a preset name, a ``ChatTemplate`` or a dict of its fields."""
    if isinstance(template, ChatTemplate):
        return template
    if isinstance(template, dict):
        return ChatTemplate(**template)
    if template not in CHAT_TEMPLATES:
        raise ValueError(
            f'unknown chat template {template!r}; presets: {sorted(CHAT_TEMPLATES)} '
            '(or pass a dict with system/user/assistant/turn_sep)'
        )
    return CHAT_TEMPLATES[template]
