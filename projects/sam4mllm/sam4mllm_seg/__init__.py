# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""SAM4MLLM (Chen et al., ECCV 2024): SAM prompts written as text by the MLLM (PPG, PQPP)."""

from .prompt_text import (
    PROMPT_WARNING_CODES,
    PromptCodec,
    PromptGroup,
    PromptParse,
    PromptWarning,
)

__all__ = ['PROMPT_WARNING_CODES', 'PromptCodec', 'PromptGroup', 'PromptParse', 'PromptWarning']
