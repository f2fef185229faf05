# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
from .refvlm_data_preprocessor import RefVLMDataPreprocessor

__all__ = ['RefVLMDataPreprocessor']
