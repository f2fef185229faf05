# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""Text normalisation for text metrics: TRP stripping, caption tokens, VQAv2 answers, POPE."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from typing import Any

# --- TRP ---------------------------------------------------------------------------------------
_TASK_BLOCK = re.compile(r'<Task>.*?</Task>', re.S)
_UNIT_GROUP = re.compile(r'\(\s*<Unit>.*?</Unit>[^()]*\)', re.S)
_TAGS = re.compile(r'</?Phrase>|<REF>|</?Unit>|\[VPT\]|<image>')
_SPACE_BEFORE_PUNCT = re.compile(r'\s+([.,;:!?])')


def _fallback_strip_trp(text: str) -> str:
    """Plain text of a TRP answer: drop the ``<Task>`` CoT block and every
    ``(<Unit>..</Unit>[i]<REF>..)`` group, keep phrase text, remove the remaining tags."""
    text = _TASK_BLOCK.sub('', text)
    text = _UNIT_GROUP.sub('', text)
    text = _TAGS.sub('', text)
    text = _SPACE_BEFORE_PUNCT.sub(r'\1', text)
    return ' '.join(text.split())


def strip_trp(text: str | None) -> str:
    """Plain caption text of a generated or rendered TRP string.

    Uses ``mmrefvlm.trp.strip_trp`` when that module exists, else a local regex fallback (same
    contract: the text a reader sees, without CoT, unit groups and tags).

    Args:
        text (str | None): Raw text; None gives ``''``.

    Returns:
        str: The plain text.
    """
    if not text:
        return ''
    try:
        from mmrefvlm.trp import strip_trp as trp_strip  # owned by the TRP module
    except ImportError:
        return _fallback_strip_trp(text)
    return trp_strip(text)


# --- captions ----------------------------------------------------------------------------------
_CAPTION_DROP = re.compile(r"[^a-z0-9'\- ]")
_CONTRACTION = re.compile(r"(\w)('s|'re|'ve|'ll|'d|'m|n't)\b")


def caption_tokenize(text: str) -> str:
    """Simplified PTB tokenisation used before CIDEr (documented in ``docs/metrics.md``).

    Lowercase; split the clitics ``'s 're 've 'll 'd 'm n't`` off their word (as the PTB
    tokenizer does); replace every character other than ``a-z 0-9 ' -`` by a space (drops the
    punctuation the COCO caption tokenizer drops); drop stand-alone ``-``/``--``/``'`` tokens.

    Args:
        text (str): A caption.

    Returns:
        str: Space-separated tokens.
    """
    text = _CONTRACTION.sub(r'\1 \2', text.lower())
    text = _CAPTION_DROP.sub(' ', text)
    return ' '.join(t for t in text.split() if t.strip("-'"))


# --- VQAv2 answers -----------------------------------------------------------------------------
_NUMBER_WORDS = {
    'none': '0',
    'zero': '0',
    'one': '1',
    'two': '2',
    'three': '3',
    'four': '4',
    'five': '5',
    'six': '6',
    'seven': '7',
    'eight': '8',
    'nine': '9',
    'ten': '10',
}
_ARTICLES = frozenset({'a', 'an', 'the'})
# Apostrophe-less spellings restored to the form annotators mostly used (a subset of the official
# table: the common negations and pronoun contractions).
_CONTRACTIONS = {
    'arent': "aren't",
    'cant': "can't",
    'couldnt': "couldn't",
    'didnt': "didn't",
    'doesnt': "doesn't",
    'dont': "don't",
    'hadnt': "hadn't",
    'hasnt': "hasn't",
    'havent': "haven't",
    'hes': "he's",
    'im': "i'm",
    'isnt': "isn't",
    'itd': "it'd",
    'itll': "it'll",
    "let's": "let's",
    'lets': "let's",
    'shouldnt': "shouldn't",
    'thats': "that's",
    'theres': "there's",
    'theyre': "they're",
    'theyve': "they've",
    'wasnt': "wasn't",
    'werent': "weren't",
    'whats': "what's",
    'wheres': "where's",
    'whos': "who's",
    'wont': "won't",
    'wouldnt': "wouldn't",
    'youre': "you're",
    'youve': "you've",
    'ive': "i've",
    'shes': "she's",
    'weve': "we've",
}
_VQA_PUNCT = (
    ';',
    '/',
    '[',
    ']',
    '"',
    '{',
    '}',
    '(',
    ')',
    '=',
    '+',
    '\\',
    '_',
    '-',
    '>',
    '<',
    '@',
    '`',
    ',',
    '?',
    '!',
)
_DIGIT_COMMA_DIGIT = re.compile(r'(\d)(,)(\d)')
_PERIOD_NOT_DECIMAL = re.compile(r'\.(?!\d)')  # as the official script: keep '.' before a digit


def normalize_vqa_answer(text: str) -> str:
    """VQAv2 answer normalisation.

    1. newlines/tabs to spaces, strip;
    2. punctuation: each mark of ``; / [ ] " { } ( ) = + \\ _ - > < @ ` , ? !`` is deleted when
       it touches a space or the text has a digit-comma-digit, else replaced by a space;
       periods are removed unless a digit follows (``3.5`` kept, ``3.`` -> ``3``);
    3. lowercase, number words ``none, zero .. ten`` to digits, articles ``a an the`` removed,
       apostrophe-less contractions (``dont``) restored (``don't``).

    Args:
        text (str): A raw answer.

    Returns:
        str: The normalised answer.
    """
    text = text.replace('\n', ' ').replace('\t', ' ').strip()
    out = text
    comma_number = _DIGIT_COMMA_DIGIT.search(text) is not None
    for p in _VQA_PUNCT:
        if f'{p} ' in text or f' {p}' in text or comma_number:
            out = out.replace(p, '')
        else:
            out = out.replace(p, ' ')
    out = _PERIOD_NOT_DECIMAL.sub('', out)
    words = [_NUMBER_WORDS.get(w, w) for w in out.lower().split()]
    words = [_CONTRACTIONS.get(w, w) for w in words if w not in _ARTICLES]
    return ' '.join(words)


def vqa_accuracy(pred: str, answers: Sequence[str]) -> float:
    """VQAv2 accuracy of one answer.

    With 10 human answers: the mean over the 10 leave-one-out subsets of 9 answers of
    ``min(#subset answers equal to pred / 3, 1)``. With another number of answers: exact match
    (1.0 if the normalised prediction equals any normalised answer). No answers: 0.0.

    Args:
        pred (str): The predicted answer (raw; normalised here).
        answers (Sequence[str]): Human answers (raw; normalised here).

    Returns:
        float: Accuracy in [0, 1].
    """
    p = normalize_vqa_answer(pred)
    gts = [normalize_vqa_answer(a) for a in answers]
    if len(gts) != 10:
        return float(p in gts)
    hits = sum(g == p for g in gts)
    # Leaving out an answer equal to pred removes one hit; leaving out another keeps all hits.
    per_subset = [min((hits - (g == p)) / 3.0, 1.0) for g in gts]
    return sum(per_subset) / len(per_subset)


# --- POPE --------------------------------------------------------------------------------------
def pope_yes_no(text: str | None, strict: bool = False) -> str | None:
    """POPE answer extraction: first sentence, commas removed; ``'no'`` if the words contain
    ``no`` or ``not``, else ``'yes'``. An empty or missing answer gives None (neither).

    Args:
        text (str | None): The raw answer.
        strict (bool): ``'yes'`` only when the first sentence has the word "yes"; an answer with
            neither "yes" nor a negation is None (neither), so garbage text (a diverged model)
            is wrong, never a "yes". Default False: the official POPE rule, where any answer
            without a negation counts as "yes".

    Returns:
        str | None: ``'yes'``, ``'no'`` or None.
    """
    if not text or not text.strip():
        return None
    first = text.split('.')[0].replace(',', ' ').lower()
    words = re.findall(r"[a-z']+", first)
    if not words:
        return None
    if 'no' in words or 'not' in words:
        return 'no'
    return 'yes' if not strict or 'yes' in words else None


# --- structured answers --------------------------------------------------------------------------
def count_answer_refs(answer: Any) -> Counter:
    """Number of ``<REF>`` per unit in a structured answer (``docs/data_format.md``).

    A group ``{'units': [u1, u2], 'n': k}`` counts ``k`` for each of its units; nested phrases are
    visited. A plain-string answer has no ``<REF>``.

    Args:
        answer (list | str | None): The structured answer.

    Returns:
        Counter: unit name -> count (units with 0 are absent).

    Raises:
        TypeError: If a segment is neither a string nor a phrase-group dict.
    """
    counts: Counter = Counter()
    if answer is None or isinstance(answer, str):
        return counts
    for seg in answer:
        if isinstance(seg, str):
            continue
        if not isinstance(seg, dict):
            raise TypeError(
                f'answer segment must be str or dict, got {type(seg).__name__}: {seg!r}'
            )
        counts.update(count_answer_refs(seg.get('phrase')))
        for group in seg.get('groups', ()):
            n = int(group.get('n', 0))
            for unit in group.get('units', ()):
                counts[unit] += n
    return +counts
