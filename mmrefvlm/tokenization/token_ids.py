# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""The token-id map shared by data, model and evaluation."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

from .special_tokens import TOKEN_ATTRS


@dataclass(frozen=True)
class TokenIdMap(Mapping):
    """Ids of the TRP special tokens, of pad/bos/eos and of the extra tokens a config declared.

    It is a read-only mapping ``token string -> id`` (every special token, extras included) with
    attribute shortcuts for the TRP tokens: ``ref``, ``image``, ``vpt``, ``phrase_start``,
    ``phrase_end``, ``unit_start``, ``unit_end``, ``task_start``, ``task_end``, plus ``pad``,
    ``bos`` (None when the tokenizer has no BOS) and ``eos``.
    """

    tokens: dict[str, int]
    pad: int
    eos: int
    bos: int | None = None
    extra: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        missing = [t for t in TOKEN_ATTRS if t not in self.tokens]
        if missing:
            raise ValueError(f'TokenIdMap is missing TRP tokens {missing}')

    def __getitem__(self, token: str) -> int:
        return self.tokens[token]

    def __iter__(self) -> Iterator[str]:
        return iter(self.tokens)

    def __len__(self) -> int:
        return len(self.tokens)

    def __hash__(self) -> int:
        return hash((tuple(sorted(self.tokens.items())), self.pad, self.eos, self.bos))

    # Attribute shortcuts, written out (no __getattr__ magic) so IDEs and type checkers see them.
    @property
    def ref(self) -> int:  # noqa: D102
        return self.tokens['<REF>']

    @property
    def image(self) -> int:  # noqa: D102
        return self.tokens['<image>']

    @property
    def vpt(self) -> int:  # noqa: D102
        return self.tokens['[VPT]']

    @property
    def phrase_start(self) -> int:  # noqa: D102
        return self.tokens['<Phrase>']

    @property
    def phrase_end(self) -> int:  # noqa: D102
        return self.tokens['</Phrase>']

    @property
    def unit_start(self) -> int:  # noqa: D102
        return self.tokens['<Unit>']

    @property
    def unit_end(self) -> int:  # noqa: D102
        return self.tokens['</Unit>']

    @property
    def task_start(self) -> int:  # noqa: D102
        return self.tokens['<Task>']

    @property
    def task_end(self) -> int:  # noqa: D102
        return self.tokens['</Task>']
