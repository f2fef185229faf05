# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
from .builder import build_causal_lm, resize_embeddings_mean, to_dtype

__all__ = ['build_causal_lm', 'resize_embeddings_mean', 'to_dtype']
