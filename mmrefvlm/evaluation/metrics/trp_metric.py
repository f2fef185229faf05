# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""TRP output health: parse-success rate and per-unit ``<REF>`` count agreement."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any, ClassVar

from mmrefvlm.registry import METRICS

from ..functional import count_answer_refs
from .base import RefVLMBaseMetric, TaskSpec, mean_or_nan

#: Parser warning codes (``mmrefvlm.trp.WARNING_CODES``) that make a sample a parse failure: the
#: parser had to drop, guess or cut structure, so ``<REF>`` may be lost or misrouted. The others
#: (stray tags, a wrong written ``[k]``, CoT problems, a plain phrase without groups, a missing
#: ``(`` parsed anyway, stray ``<image>``) are recovered without loss and are not errors.
DEFAULT_ERROR_CODES = (
    'unclosed_phrase',
    'ref_outside_group',
    'orphan_group',
    'unclosed_group',
    'malformed_group',
    'unclosed_unit',
    'empty_unit',
    'invalid_unit',
    'unknown_unit',
    'repetition',
    'too_deep',
    'unclosed_task',
    'truncated',
)
#: Warning strings starting with one of these are errors too (the model's own warnings).
DEFAULT_ERROR_PREFIXES = ('error', 'generation stopped at max_new_tokens')


def is_error_warning(
    warning: Any,
    error_codes: Sequence[str] = DEFAULT_ERROR_CODES,
    error_prefixes: Sequence[str] = DEFAULT_ERROR_PREFIXES,
) -> bool:
    """Whether a warning is error-level.

    Accepted forms: a string ``'<code>: <message>'`` (what ``RefVLM.predict`` writes), an object
    with a ``code`` attribute (``mmrefvlm.trp.ParseWarning``) or a dict with ``level`` (error iff
    ``'error'``) or ``code``. A warning is an error when its code is in ``error_codes`` or its text
    starts (case-insensitively) with one of ``error_prefixes``.
    """
    if isinstance(warning, dict):
        if 'level' in warning:
            return str(warning['level']).lower() == 'error'
        return str(warning.get('code', '')) in error_codes
    if hasattr(warning, 'code'):
        return str(warning.code) in error_codes
    text = str(warning).strip()
    if any(text.lower().startswith(p.lower()) for p in error_prefixes):
        return True
    return text.split(':', 1)[0].strip() in error_codes


def gt_ref_counts(sample: dict) -> Counter:
    """Per-unit ``<REF>`` counts of the GT: from ``gt_answer``, else from ``gt_instances.units``."""
    if sample.get('gt_answer') is not None:
        return count_answer_refs(sample['gt_answer'])
    units = (sample.get('gt_instances') or {}).get('units') or []
    return Counter(units)


@METRICS.register_module()
class TRPParseMetric(RefVLMBaseMetric):
    """How often the generated TRP text is well formed and has the right number of ``<REF>``.

    A sample is a **parse success** when it has a ``pred_text`` (a missing prediction fails) and
    none of its ``warnings`` is error-level (:func:`is_error_warning`: a parser code in
    ``error_codes``, or a text starting with one of ``error_prefixes``, e.g. a generation cut at
    ``max_new_tokens``; recovered-without-loss warnings do not fail it). It is a **count match**
    when it is a parse success and the number of ``<REF>`` per unit in ``pred_answer`` (0 when
    missing) equals that of the GT (``gt_answer``, else ``gt_instances.units``); a group with
    several units counts its ``n`` for each of them.

    Keys (percent): ``parse_success``, ``count_match``.

    Args:
        tasks (Sequence[str], optional): Defaults to None (every task).
        error_codes (Sequence[str]): Error-level parser codes. Defaults to
            :data:`DEFAULT_ERROR_CODES`.
        error_prefixes (Sequence[str]): Error-level warning prefixes. Defaults to
            :data:`DEFAULT_ERROR_PREFIXES`.
        **kwargs: ``prefix``, ``collect_device``, ``collect_dir``.
    """

    default_prefix: ClassVar[str] = 'trp'
    default_tasks: ClassVar[tuple[str, ...] | None] = None

    def __init__(
        self,
        tasks: TaskSpec = None,
        *,
        error_codes: Sequence[str] = DEFAULT_ERROR_CODES,
        error_prefixes: Sequence[str] = DEFAULT_ERROR_PREFIXES,
        **kwargs,
    ) -> None:
        super().__init__(tasks, **kwargs)
        for name, value in (('error_codes', error_codes), ('error_prefixes', error_prefixes)):
            if isinstance(value, str):
                raise TypeError(f'{name} must be a sequence of strings, not the string {value!r}')
        self.error_codes = tuple(error_codes)
        self.error_prefixes = tuple(error_prefixes)

    def process_sample(self, sample: dict) -> tuple[bool, bool]:  # noqa: D102
        warnings = sample.get('warnings') or []
        self.prediction_text(sample)  # counts a non-text pred_text as invalid
        ok = isinstance(sample.get('pred_text'), str) and not any(
            is_error_warning(w, self.error_codes, self.error_prefixes) for w in warnings
        )
        match = ok and count_answer_refs(sample.get('pred_answer')) == gt_ref_counts(sample)
        return bool(ok), bool(match)

    def compute_from(self, results: list) -> dict[str, float]:  # noqa: D102
        return {
            'parse_success': mean_or_nan(r[0] for r in results) * 100,
            'count_match': mean_or_nan(r[1] for r in results) * 100,
        }
