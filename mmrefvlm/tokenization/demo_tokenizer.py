# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""A small, deterministic byte-level BPE tokenizer trained on mmrefvlm's own text.

It needs no download: the training corpus is the prompt templates shipped in
``mmrefvlm/datasets/templates/`` plus the word list ``demo_vocab.txt`` (the demo dataset's colours,
shapes, relations, answers). Byte-level BPE encodes any text (nothing maps to an unknown token) and
decodes it back exactly, so the TRP parser sees the same string the builder wrote.
Training takes well under a second and is deterministic for a given corpus and ``tokenizers``
version (the corpus is read in sorted file order).
"""

from __future__ import annotations

import json
import os.path as osp
from glob import glob
from typing import Any

_HERE = osp.dirname(osp.abspath(__file__))
TEMPLATE_DIR = osp.join(osp.dirname(_HERE), 'datasets', 'templates')
VOCAB_FILE = osp.join(_HERE, 'demo_vocab.txt')

BOS, EOS = '<s>', '</s>'


def _strings(obj: Any) -> list[str]:
    if isinstance(obj, str):
        return [obj]
    if isinstance(obj, dict):
        return [s for v in obj.values() for s in _strings(v)]
    if isinstance(obj, list):
        return [s for v in obj for s in _strings(v)]
    return []


def demo_corpus() -> list[str]:
    """The training text: every string in the template files, then the demo word list."""
    lines: list[str] = []
    for path in sorted(glob(osp.join(TEMPLATE_DIR, '**', '*.json'), recursive=True)):
        with open(path, encoding='utf-8') as f:
            lines.extend(_strings(json.load(f)))
    with open(VOCAB_FILE, encoding='utf-8') as f:
        words = [w.strip() for w in f if w.strip() and not w.startswith('#')]
    # Words appear alone and after a space so that both BPE forms ("red", " red") are learnt.
    lines.extend(words)
    lines.extend(' '.join(words[i : i + 16]) for i in range(0, len(words), 16))
    return lines


def build_demo_hf_tokenizer(vocab_size: int = 2048) -> Any:
    """Train the demo BPE and wrap it as a ``PreTrainedTokenizerFast`` (BOS ``<s>``, EOS ``</s>``).

    Args:
        vocab_size (int): Target vocabulary size before special tokens. Default 2048.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[BOS, EOS],
        show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        min_frequency=1,
    )
    tok.train_from_iterator(demo_corpus(), trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=BOS, eos_token=EOS)
