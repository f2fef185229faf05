# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""Seeded mutation fuzzing: the parser never raises on model output and keeps its invariants."""

import random
import re
from functools import partial

from mmrefvlm.tokenization import TRP_SPECIAL_TOKENS
from mmrefvlm.trp import (
    WARNING_CODES,
    answer_text,
    build_answer,
    iter_groups,
    parse_answer,
    parse_token_ids,
    strip_trp,
)

NUM_TEXT = 10_000
NUM_IDS = 10_000
MUTANTS_PER_BASE = 4
KNOWN = frozenset({'box', 'mask', 'depth'})
UNITS = ['box', 'mask', 'keypoint', 'depth']
WORDS = [
    'the',
    'red',
    'circle',
    'two',
    'dogs',
    'in',
    'park',
    'ünï',
    '日本',
    '(',
    ')',
    '[1]',
    ',',
    '\n',
    '3',
    ' ',
    'é',
    'Name:',
    '[',
    ']',
]
PIECES = list(TRP_SPECIAL_TOKENS) + [
    '[0]',
    '[1]',
    '[7]',
    '(',
    ')',
    ', ',
    ',',
    'box',
    'mask',
    '<Unit>box</Unit>',
    '[0]<REF>',
    '\n',
    'x',
    '日',
    '</Phr',
]
_LEXEME_RE = re.compile('(' + '|'.join(re.escape(t) for t in TRP_SPECIAL_TOKENS) + ')')


def rand_text(rng):
    return ' '.join(rng.choice(WORDS) for _ in range(rng.randint(0, 3)))


def rand_segments(rng, depth, nested):
    segs = []
    for _ in range(rng.randint(1, 4)):
        if depth > 0 and rng.random() < 0.6:
            phrase = rand_text(rng) if rng.random() < 0.7 else rand_segments(rng, depth - 1, True)
            groups = [
                {'units': rng.sample(UNITS, rng.randint(1, 2)), 'n': rng.randint(0, 3)}
                for _ in range(rng.randint(0 if nested else 1, 2))
            ]
            segs.append({'phrase': phrase, 'groups': groups})
        else:
            segs.append(rand_text(rng))
    return segs


def mutate(rng, seq, pieces):
    """Apply 1-4 random edits to a list (characters, lexemes or token ids)."""
    seq = list(seq)
    for _ in range(rng.randint(1, 4)):
        op = rng.random()
        i = rng.randint(0, len(seq))
        j = min(len(seq), i + rng.randint(1, 8))
        if op < 0.2:
            del seq[i:j]
        elif op < 0.45:
            seq[i:i] = [rng.choice(pieces) for _ in range(rng.randint(1, 3))]
        elif op < 0.6:
            seq[i:i] = seq[i:j]
        elif op < 0.72 and j < len(seq):
            k = min(len(seq), j + rng.randint(1, 8))
            seq[i:k] = seq[j:k] + seq[i:j]
        elif op < 0.85:
            seq = seq[:i]
        elif op < 0.9:  # runaway repetition of a span (or of "[0]<REF>") until "max tokens"
            span = seq[i:j] or [rng.choice(pieces)]
            seq[i:i] = span * rng.randint(20, 500 // len(span) + 20)
        else:
            seq[i:j] = [rng.choice(pieces)] * (j - i)
    return seq


def check_common(res, count_refs, at_ref, deep=True):
    assert len(res.refs) == count_refs
    positions = [r.position for r in res.refs]
    assert positions == sorted(set(positions)) and all(at_ref(p) for p in positions)
    for r in res.refs:
        assert isinstance(r.units, tuple) and all(isinstance(u, str) for u in r.units)
        if r.triplet is None:
            assert r.units == () and r.group is None and r.k is None
    assert all(w.code in WARNING_CODES for w in res.warnings)
    if not deep:
        return
    # Grouped refs index the recovered answer exactly as iter_groups enumerates it.
    grouped = [(r.triplet, r.group, r.k) for r in res.refs if r.triplet is not None]
    assert grouped == [
        (t, g, k) for t, g, _, grp in iter_groups(res.answer) for k in range(grp['n'])
    ]
    # The recovered answer is valid, and re-parses to itself (only repetition is still there).
    again = parse_answer(build_answer(res.answer))
    assert again.answer == res.answer and set(again.warning_codes) <= {'repetition'}


def test_fuzz_parse_answer():
    rng = random.Random(0)
    num_warned = 0
    for it in range(NUM_TEXT):
        if it % MUTANTS_PER_BASE == 0:
            base = build_answer(rand_segments(rng, 2, False), cot=rng.random() < 0.3)
            lexemes = [s for s in _LEXEME_RE.split(base) if s]
        if it % 2:  # character-level edits (tags get cut) or lexeme-level edits (tags move)
            text = ''.join(mutate(rng, base, PIECES))
        else:
            text = ''.join(mutate(rng, lexemes, PIECES))
        known = KNOWN if it % 3 == 0 else None
        res = parse_answer(text, known_units=known)
        check_common(
            res, text.count('<REF>'), partial(text.startswith, '<REF>'), deep=it % 4 < 2
        )  # both mutation kinds get the deep checks
        if known is not None:
            assert all(set(r.units) <= KNOWN for r in res.refs)
        assert all(0 <= w.position <= len(text) for w in res.warnings)
        if it % 4 == 3:
            assert strip_trp(text) == answer_text(res.answer)
        num_warned += bool(res.warnings)
    assert num_warned > NUM_TEXT // 2  # the mutations do break the answers


def test_fuzz_parse_token_ids(demo_tokenizer):
    tok, ids_map = demo_tokenizer, demo_tokenizer.ids
    rng = random.Random(1)
    specials = [ids_map[t] for t in TRP_SPECIAL_TOKENS] + [ids_map.pad, ids_map.bos, ids_map.eos]
    vocab = list(range(2, 400))
    skip = {ids_map.pad, ids_map.bos}
    for it in range(NUM_IDS):
        if it % MUTANTS_PER_BASE == 0:
            text = build_answer(rand_segments(rng, 2, False), cot=rng.random() < 0.3)
            base = tok.encode(text) + [ids_map.eos, ids_map.pad]
            pieces = specials * 3 + rng.sample(vocab, 20) + [-100]
        ids = mutate(rng, base, pieces)
        res = parse_token_ids(ids, tok)
        end = ids.index(ids_map.eos) if ids_map.eos in ids else len(ids)
        check_common(
            res,
            ids[:end].count(ids_map.ref),
            lambda p, ids=ids: ids[p] == ids_map.ref,
            deep=it % 2 == 0,
        )
        assert all(0 <= w.position <= end for w in res.warnings)
        if it % 2:
            # Same structure as parsing the decoded text (pad/BOS/-100 are skipped by both).
            kept = [t for t in ids[:end] if t >= 0 and t not in skip]
            text_res = parse_answer(tok.decode(kept))
            assert res.answer == text_res.answer
            assert [(r.units, r.triplet, r.group, r.k) for r in res.refs] == [
                (r.units, r.triplet, r.group, r.k) for r in text_res.refs
            ]
        if it % 10 == 0:  # multi-answer mode keeps positions on <REF> ids too
            multi = parse_token_ids(ids, tok, known_units=KNOWN, stop_at_eos=False)
            assert len(multi.refs) == ids.count(ids_map.ref)
            assert all(ids[r.position] == ids_map.ref and set(r.units) <= KNOWN for r in multi.refs)
