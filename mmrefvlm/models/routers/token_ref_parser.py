# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""``SpecialTokenRefParser``: reference tokens for answers that are not TRP, where a special token
is itself the reference (LISA's ``[SEG]``, GSVA's ``[SEG]`` / ``[REJ]``, AnyRef's ``<obj>``)."""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping, Sequence
from typing import Any

from mmrefvlm.registry import TASK_UTILS
from mmrefvlm.tokenization import RefTokenizer
from mmrefvlm.trp import FoundRef, ParseResult, ParseWarning, RefInfo

#: Ids of the slot tokens: reference id -> units, rejection id -> units, other special ids.
TokenTables = tuple[dict[int, tuple[str, ...]], dict[int, tuple[str, ...]], set[int]]


def _units(spec: str | Sequence[str], token: str) -> tuple[str, ...]:
    units = (spec,) if isinstance(spec, str) else tuple(spec)
    if not units or not all(isinstance(u, str) and u for u in units):
        raise ValueError(f'token {token!r} needs one or more unit names, got {spec!r}')
    return units


@TASK_UTILS.register_module()
class SpecialTokenRefParser:
    """Find the references of an answer in which configured special tokens are the references.

    An answer is read as *slots*: every reference token (``ref_tokens``) or rejection token
    (``reject_tokens``) closes one slot, whose phrase is taken from the text since the previous
    slot. A reference token is routed like a TRP ``<REF>`` (one query of each of its units); a
    rejection token is the explicit "no such object" of that slot: it becomes a phrase group with
    zero references in the parsed answer (the TRP meaning of ``n = 0``) and is never routed, so
    no decoder runs for it. Slot ``k`` is phrase group ``k`` of ``ParseResult.answer``; routed
    references get one group id per slot, in slot order.

    Call it like :func:`~mmrefvlm.models.routers.find_refs` (``RefVLM(ref_parser=...)`` does);
    it never raises on model output: special tokens that are not slot tokens are dropped from the
    text with an ``unexpected_token`` warning, and tokens of units without a decoder are kept in
    the answer but not routed (``unknown_unit``).

    Args:
        ref_tokens (Mapping[str, str | Sequence[str]]): Token -> the unit(s) it is decoded as,
            e.g. ``{'[SEG]': 'mask'}``. The tokens must be special tokens of the tokenizer
            (declared in its ``extra_tokens``).
        reject_tokens (Mapping[str, str | Sequence[str]]): Token -> the unit(s) it rejects, e.g.
            ``{'[REJ]': 'mask'}``. Defaults to none.
        phrase_pattern (str, optional): Regular expression searched in a slot's text; its group
            ``phrase`` is the slot's phrase, the text before it stays a plain text segment and
            the text between the group and the slot token is dropped (GSVA, ``'Sure, e1:[SEG]'``:
            ``r'(?:^|,)\\s*(?:Sure,\\s*)?(?P<phrase>[^,:]*?)\\s*:\\s*$'``). None or no match: the
            whole stripped slot text is the phrase.
    """

    def __init__(
        self,
        ref_tokens: Mapping[str, str | Sequence[str]],
        reject_tokens: Mapping[str, str | Sequence[str]] | None = None,
        phrase_pattern: str | None = None,
    ) -> None:
        if not ref_tokens:
            raise ValueError('ref_tokens must name at least one reference token')
        self.ref_tokens = {t: _units(u, t) for t, u in ref_tokens.items()}
        self.reject_tokens = {t: _units(u, t) for t, u in (reject_tokens or {}).items()}
        both = set(self.ref_tokens) & set(self.reject_tokens)
        if both:
            raise ValueError(f'tokens {sorted(both)} are both reference and rejection tokens')
        self.phrase_re = None if phrase_pattern is None else re.compile(phrase_pattern)
        if self.phrase_re is not None and 'phrase' not in self.phrase_re.groupindex:
            raise ValueError(f'phrase_pattern {phrase_pattern!r} has no (?P<phrase>...) group')

    def _ids(self, tokenizer: RefTokenizer) -> TokenTables:
        """Reference ids, rejection ids (each -> units) and the other special ids."""
        missing = [t for t in (*self.ref_tokens, *self.reject_tokens) if t not in tokenizer.ids]
        if missing:
            raise ValueError(
                f'tokens {missing} are not special tokens of the tokenizer; declare them in '
                'its extra_tokens'
            )
        refs = {tokenizer.ids[t]: u for t, u in self.ref_tokens.items()}
        rejs = {tokenizer.ids[t]: u for t, u in self.reject_tokens.items()}
        other = set(tokenizer.ids.values()) | {tokenizer.ids.pad}
        if tokenizer.ids.bos is not None:
            other.add(tokenizer.ids.bos)
        return refs, rejs, other - set(refs) - set(rejs)

    def _split_phrase(self, text: str) -> tuple[str, str]:
        """(plain text before the phrase, phrase) of one slot's text."""
        match = None if self.phrase_re is None else self.phrase_re.search(text)
        if match is None:
            return '', text.strip()
        return text[: match.start('phrase')], match.group('phrase').strip()

    def parse_answer(
        self,
        ids: Sequence[int],
        tokenizer: RefTokenizer,
        known_units: Collection[str] | None,
        token_ids: TokenTables | None = None,
    ) -> ParseResult:
        """Parse one answer (no EOS inside): structured answer, refs (token index in ``ids``)
        and warnings."""
        refs_ids, rej_ids, other = token_ids or self._ids(tokenizer)
        result = ParseResult()
        run: list[int] = []
        slot = 0
        for i, tok in enumerate(ids):
            if tok in other:
                result.warnings.append(
                    ParseWarning('unexpected_token', f'special token {tok} in an answer', i)
                )
                continue
            if tok not in refs_ids and tok not in rej_ids:
                run.append(tok)
                continue
            before, phrase = self._split_phrase(tokenizer.decode(run))
            run = []
            units = refs_ids.get(tok) or rej_ids[tok]
            routed = units if known_units is None else tuple(u for u in units if u in known_units)
            if tok in refs_ids:
                if len(routed) < len(units):
                    result.warnings.append(
                        ParseWarning('unknown_unit', f'units {units} without a decoder', i)
                    )
                result.refs.append(RefInfo(i, routed, slot, 0, 0, phrase))
            if before:
                result.answer.append(before)
            group = {'units': list(units), 'n': int(tok in refs_ids)}
            result.answer.append({'phrase': phrase, 'groups': [group]})
            slot += 1
        tail = tokenizer.decode(run) if run else ''
        if tail:
            result.answer.append(tail)
        return result

    def __call__(
        self,
        token_ids: Any,
        tokenizer: RefTokenizer,
        *,
        known_units: Collection[str] | None,
        span_mask: Any = None,
    ) -> tuple[list[FoundRef], list[str], list[ParseResult]]:
        """References of one sample, as :func:`~mmrefvlm.trp.find_refs` returns them.

        Args:
            token_ids (Tensor | Sequence[int]): (L,) the sample's sequence.
            tokenizer (RefTokenizer): Holds the ids of the slot tokens.
            known_units (Collection[str], optional): Units that have a decoder. None: every unit
                (the data pipeline, which does not know the model's decoders).
            span_mask (Tensor | Sequence[bool], optional): (L,) answer positions (the labels mask
                in training); consecutive answers are separated at EOS. None: the whole sequence
                is one answer (generated tokens).

        Returns:
            tuple: refs ``(position, units, (answer, slot, 0), phrase, None)`` with positions in
            ``token_ids``, warning strings, and one ``ParseResult`` per answer.
        """
        seq = token_ids.tolist() if hasattr(token_ids, 'tolist') else token_ids
        every = [int(t) for t in seq]
        if span_mask is None:
            pos = list(range(len(every)))
        else:
            keep = span_mask.tolist() if hasattr(span_mask, 'tolist') else list(span_mask)
            pos = [i for i, k in enumerate(keep) if k]
        ids = [every[i] for i in pos]
        tables = self._ids(tokenizer)
        out: list[FoundRef] = []
        warnings: list[str] = []
        results: list[ParseResult] = []
        start = 0
        eos = tokenizer.ids.eos
        for end in [i for i, t in enumerate(ids) if t == eos] + [len(ids)]:
            if end > start:
                res = self.parse_answer(ids[start:end], tokenizer, known_units, tables)
                warnings += [f'{w.code}: {w.message}' for w in res.warnings]
                for ref in res.refs:
                    if not ref.units:
                        warnings.append(f'dropped reference at token {pos[start + ref.position]}')
                        continue
                    key = (len(results), ref.triplet, 0)
                    out.append((pos[start + ref.position], ref.units, key, ref.phrase, None))
                results.append(res)
            start = end + 1
        return out, warnings, results
