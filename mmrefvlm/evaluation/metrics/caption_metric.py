# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""Caption metrics: CIDEr-D (own implementation) and optional METEOR (pycocoevalcap, Java)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import ClassVar

from mmengine.logging import print_log

from mmrefvlm.registry import METRICS

from ..functional import caption_tokenize, cider_d, strip_trp
from .base import RefVLMBaseMetric, TaskSpec

TOKENIZERS = ('simple', 'ptb')


def tokenize_captions(texts: Sequence[str], tokenizer: str = 'simple') -> list[str]:
    """Tokenise captions: ``'simple'`` (:func:`caption_tokenize`) or ``'ptb'`` (pycocoevalcap's
    Stanford PTB tokenizer, needs ``pycocoevalcap`` and Java).

    Raises:
        ValueError: If ``tokenizer`` is unknown.
    """
    if tokenizer == 'simple':
        return [caption_tokenize(t) for t in texts]
    if tokenizer != 'ptb':
        raise ValueError(f'tokenizer must be one of {TOKENIZERS}, got {tokenizer!r}')
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    out = PTBTokenizer().tokenize({i: [{'caption': t}] for i, t in enumerate(texts)})
    return [out[i][0] for i in range(len(texts))]


def meteor_score(candidates: Sequence[str], references: Sequence[Sequence[str]]) -> float | None:
    """Corpus METEOR through pycocoevalcap (Java). Returns None, with a warning naming the
    reason, when pycocoevalcap or Java is unavailable: METEOR is then not reported, never 0.

    Args:
        candidates (Sequence[str]): N tokenised candidates.
        references (Sequence[Sequence[str]]): N lists of tokenised references.

    Returns:
        float | None: METEOR in [0, 1], or None.
    """
    try:
        from pycocoevalcap.meteor.meteor import Meteor

        scorer = Meteor()
        score, _ = scorer.compute_score(
            {i: list(r) for i, r in enumerate(references)},
            {i: [c] for i, c in enumerate(candidates)},
        )
    except (ImportError, OSError) as err:  # OSError: no java executable
        print_log(
            f'METEOR is unavailable and not reported ({type(err).__name__}: {err}); it '
            'needs `pip install pycocoevalcap` and a Java runtime',
            logger='current',
            level=logging.WARNING,
        )
        return None
    return float(score)


def caption_references(sample: dict) -> list[str]:
    """Reference captions of a sample: ``gt_captions``, else the plain text of ``gt_text``.

    Raises:
        ValueError: If the sample has neither.
    """
    refs = [r for r in (sample.get('gt_captions') or []) if r]
    if not refs and sample.get('gt_text'):
        refs = [strip_trp(sample['gt_text'])]
    if not refs:
        raise ValueError(
            f'sample {sample.get("record_id")!r} (task {sample.get("task")!r}) has '
            'no reference caption (gt_captions / gt_text)'
        )
    return refs


def score_captions(
    candidates: Sequence[str],
    references: Sequence[Sequence[str]],
    tokenizer: str = 'simple',
    meteor: bool = False,
) -> dict[str, float]:
    """``CIDEr`` (x100) and, when requested and available, ``METEOR`` (x100) of raw captions."""
    flat = tokenize_captions(list(candidates) + [r for refs in references for r in refs], tokenizer)
    cands, pos, refs = flat[: len(candidates)], len(candidates), []
    for group in references:
        refs.append(flat[pos : pos + len(group)])
        pos += len(group)
    out = {'CIDEr': cider_d(cands, refs)[0] * 100}
    if meteor:
        value = meteor_score(cands, refs)
        if value is not None:
            out['METEOR'] = value * 100
    return out


@METRICS.register_module()
class CaptionMetric(RefVLMBaseMetric):
    """Captioning (and region captioning) scores over the split.

    Candidate: the plain text of ``pred_text`` (TRP stripped; empty when missing). References:
    ``gt_captions`` (all references of the image), else the plain ``gt_text``.

    Keys: ``CIDEr`` (CIDEr-D x 100, IDF over this split), ``METEOR`` (x 100, only with
    ``meteor=True`` and when pycocoevalcap + Java work; otherwise a warning and no key).

    Args:
        tasks (Sequence[str]): Defaults to ``('caption',)``.
        tokenizer (str): ``'simple'`` (default, no Java) or ``'ptb'``.
        meteor (bool): Also compute METEOR. Defaults to False.
        **kwargs: ``prefix``, ``collect_device``, ``collect_dir``.
    """

    default_prefix: ClassVar[str] = 'caption'
    default_tasks: ClassVar[tuple[str, ...]] = ('caption',)

    def __init__(
        self, tasks: TaskSpec = None, *, tokenizer: str = 'simple', meteor: bool = False, **kwargs
    ) -> None:
        super().__init__(tasks, **kwargs)
        if tokenizer not in TOKENIZERS:
            raise ValueError(f'tokenizer must be one of {TOKENIZERS}, got {tokenizer!r}')
        self.tokenizer = tokenizer
        self.meteor = meteor

    def process_sample(self, sample: dict) -> tuple[str, list[str]]:  # noqa: D102
        return strip_trp(self.prediction_text(sample)), caption_references(sample)

    def compute_from(self, results: list) -> dict[str, float]:  # noqa: D102
        if not results:
            return {'CIDEr': float('nan')}
        return score_captions(
            [r[0] for r in results], [r[1] for r in results], self.tokenizer, self.meteor
        )
