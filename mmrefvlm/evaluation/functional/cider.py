# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""CIDEr-D (Vedantam et al., 2015), the variant every COCO-caption evaluation reports."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence

import numpy as np


def _ngram_counts(tokens: list[str], max_n: int) -> list[Counter]:
    """Counts of the 1..max_n-grams of a token list, one Counter per order."""
    return [
        Counter(tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1))
        for n in range(1, max_n + 1)
    ]


def _tfidf(
    counts: list[Counter], df: Counter, log_num_docs: float
) -> tuple[list[dict], np.ndarray]:
    """TF-IDF vectors (one dict per n-gram order) and their L2 norms (max_n,)."""
    vecs = [
        {g: tf * (log_num_docs - math.log(max(1.0, df[g]))) for g, tf in c.items()} for c in counts
    ]
    norms = np.array([math.sqrt(sum(v * v for v in vec.values())) for vec in vecs])
    return vecs, norms


def cider_d(
    candidates: Sequence[str],
    references: Sequence[Sequence[str]],
    max_n: int = 4,
    sigma: float = 6.0,
) -> tuple[float, np.ndarray]:
    """CIDEr-D of tokenised captions over a corpus.

    Definition (all sums over the corpus given here, which is what defines the IDF):

    1. For every n in 1..``max_n``, a sentence is the vector ``g_k = tf_k * (log(N) -
       log(max(1, df_k)))`` over its n-grams k, where N is the number of samples and ``df_k``
       the number of samples whose references contain k at least once.
    2. For a candidate c and one reference r: ``s_n = sum_k min(g_k(c), g_k(r)) g_k(r) /
       (|g(c)| |g(r)|)`` (0 when a norm is 0; the ``min`` is CIDEr-D's clipping), times the length
       penalty ``exp(-(l_c - l_r)^2 / (2 sigma^2))`` with l the number of tokens.
    3. ``CIDEr-D(c) = 10 * mean_r mean_n s_n``; the corpus score is the mean over samples.

    Args:
        candidates (Sequence[str]): N space-tokenised candidate captions.
        references (Sequence[Sequence[str]]): N lists of space-tokenised references (each list
            non-empty).
        max_n (int): Largest n-gram order. Defaults to 4.
        sigma (float): Length-penalty width. Defaults to 6.0.

    Returns:
        tuple[float, np.ndarray]: The corpus score and the (N,) float64 per-sample scores
        (raw scale: papers report them multiplied by 100).

    Raises:
        ValueError: If the lengths differ or a sample has no reference.
    """
    if len(candidates) != len(references):
        raise ValueError(f'{len(candidates)} candidates but {len(references)} reference lists')
    for i, refs in enumerate(references):
        if len(refs) == 0:
            raise ValueError(f'sample {i} has no reference caption')
    if not candidates:
        return float('nan'), np.zeros(0)
    ref_counts = [[_ngram_counts(r.split(), max_n) for r in refs] for refs in references]
    ref_lens = [[len(r.split()) for r in refs] for refs in references]
    df: Counter = Counter()
    for per_ref in ref_counts:
        df.update({g for counts in per_ref for c in counts for g in c})
    log_num_docs = math.log(float(len(candidates)))
    scores = np.zeros(len(candidates))
    for i, cand in enumerate(candidates):
        c_tokens = cand.split()
        c_vecs, c_norms = _tfidf(_ngram_counts(c_tokens, max_n), df, log_num_docs)
        total = 0.0
        for counts, r_len in zip(ref_counts[i], ref_lens[i], strict=True):
            r_vecs, r_norms = _tfidf(counts, df, log_num_docs)
            penalty = math.exp(-((len(c_tokens) - r_len) ** 2) / (2 * sigma**2))
            per_n = []
            for cv, rv, cn, rn in zip(c_vecs, r_vecs, c_norms, r_norms, strict=True):
                dot = sum(min(w, rv[g]) * rv[g] for g, w in cv.items() if g in rv)
                per_n.append(dot / (cn * rn) * penalty if cn > 0 and rn > 0 else 0.0)
            total += float(np.mean(per_n))
        scores[i] = 10.0 * total / len(ref_counts[i])
    return float(scores.mean()), scores
