# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""The TRP parser is linear in the size of its input, also for one ``<Unit>`` holding many
distinct unit names (issue 17: the duplicate test was a list scan, quadratic in the names).

No wall-clock limit: the check is the *ratio* of CPU times (``time.process_time``, best of 3) of
an input 8x larger. Linear code gives about 8, the old quadratic code about 64; the bound 24
leaves a factor 3 either way, so machine load cannot make it flake.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from mmrefvlm.tokenization import build_tokenizer
from mmrefvlm.trp import parse_answer, parse_token_ids

SMALL, LARGE, MAX_RATIO = 2000, 16000, 24.0


def _many_units(n: int) -> str:
    return '<Phrase>x</Phrase>(<Unit>' + ','.join(f'u{i}' for i in range(n)) + '</Unit>[0]<REF>).'


def _cpu_time(fn: Callable[[], object], repeat: int) -> float:
    """Best of 3 CPU times of ``repeat`` calls, per call."""
    best = float('inf')
    for _ in range(3):
        start = time.process_time()
        for _ in range(repeat):
            fn()
        best = min(best, (time.process_time() - start) / repeat)
    return best


def _ratio(parse: Callable[[object], object], prepare: Callable[[str], object] = str) -> float:
    small, large = prepare(_many_units(SMALL)), prepare(_many_units(LARGE))
    reps = LARGE // SMALL  # the small input is timed over as many calls: similar total times
    return _cpu_time(lambda: parse(large), 1) / max(_cpu_time(lambda: parse(small), reps), 1e-6)


def test_many_distinct_unit_names_parse_in_linear_time():
    res = parse_answer(_many_units(LARGE))
    assert len(res.answer[0]['groups'][0]['units']) == LARGE and len(res.refs) == 1
    ratio = _ratio(parse_answer)
    assert ratio < MAX_RATIO, f'8x more unit names took {ratio:.1f}x the time (linear: ~8)'


def test_token_id_parser_is_linear_too():
    tok = build_tokenizer('demo')
    res = parse_token_ids(tok.encode(_many_units(SMALL)), tok)
    assert len(res.refs) == 1 and len(res.refs[0].units) == SMALL
    ratio = _ratio(lambda ids: parse_token_ids(ids, tok), prepare=tok.encode)
    assert ratio < MAX_RATIO, f'8x more unit names took {ratio:.1f}x the time (linear: ~8)'
