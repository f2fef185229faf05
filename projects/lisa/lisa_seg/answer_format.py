# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""``SlotAnswerFormat``: answers of the "embedding as mask" methods, one special token per
expression (LISA: ``Sure, it is [SEG].``; GSVA: ``Sure, e1:[SEG], e2:[REJ].``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from mmrefvlm.registry import TASK_UTILS
from mmrefvlm.trp import iter_groups, phrase_text


@TASK_UTILS.register_module()
class SlotAnswerFormat:
    """Render a structured answer as ``prefix + sep.join(slots) + suffix``, one slot per group.

    A group with ``n == 1`` is written with ``ref_token``, a group with ``n == 0`` (an explicit
    "no such object") with ``reject_token``; the slot text is
    ``slot.format(phrase=..., token=...)``.
    The text segments of the answer are not rendered: the methods answer in a fixed sentence.
    The format is the ``answer_format`` of ``FormatConversation`` and pairs with the model's
    ``SpecialTokenRefParser(ref_tokens={ref_token: unit}, reject_tokens={reject_token: unit})``.

    Args:
        ref_token (str): The reference token (``'[SEG]'``).
        reject_token (str, optional): The rejection token (GSVA ``'[REJ]'``). None: an empty
            group is an error (LISA has no rejection; give it an empty target instead).
        prefix (str): Text before the first slot. Defaults to ``'Sure, '``.
        slot (str): Slot template with ``{phrase}`` and/or ``{token}``. Defaults to
            ``'{phrase}:{token}'`` (GSVA).
        sep (str): Between slots. Defaults to ``', '``.
        suffix (str): After the last slot. Defaults to ``'.'``.

    Raises:
        ValueError: (when called) a group with ``n > 1`` (union its targets first with
            ``UnionExpressionTargets``), an empty group without ``reject_token``, or an answer
            without groups.
    """

    def __init__(
        self,
        ref_token: str,
        *,
        reject_token: str | None = None,
        prefix: str = 'Sure, ',
        slot: str = '{phrase}:{token}',
        sep: str = ', ',
        suffix: str = '.',
    ) -> None:
        if '{token}' not in slot:
            raise ValueError(f'slot template {slot!r} must contain {{token}}')
        self.ref_token, self.reject_token = ref_token, reject_token
        self.prefix, self.slot, self.sep, self.suffix = prefix, slot, sep, suffix

    def __call__(self, answer: str | Sequence[Any], cot: bool = False) -> str:
        """The answer text (``cot`` is ignored: these methods have no VD-CoT)."""
        slots = []
        for _, _, phrase_group, group in iter_groups(answer):
            n, phrase = int(group['n']), phrase_text(phrase_group)
            if n > 1:
                raise ValueError(
                    f'{phrase!r} has {n} targets but one token per expression is rendered; '
                    'union them first (UnionExpressionTargets)'
                )
            if n == 0 and self.reject_token is None:
                raise ValueError(f'{phrase!r} has no target and this format has no reject token')
            token = self.ref_token if n == 1 else self.reject_token
            slots.append(self.slot.format(phrase=phrase, token=token))
        if not slots:
            raise ValueError(f'answer {answer!r} has no phrase group to render as a slot')
        return self.prefix + self.sep.join(slots) + self.suffix
