# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""SAM4MLLM (Chen et al., ECCV 2024): SAM prompts written as text by the MLLM (PPG, PQPP).

Importing registers ``SAM4MLLM``, ``PromptableSam``, ``SamPromptSegmentor``,
``CrossAttnResampler`` (``MODELS``), ``SAM4MLLMConversation``, ``SamPromptSample``
(``TRANSFORMS``), ``SamPromptAnswerFormat`` (``TASK_UTILS``) and ``PromptIoUMetric``
(``METRICS``).
"""

from .metric import PromptIoUMetric
from .model import SAM4MLLM
from .prompt_sam import PromptableSam, SamPromptSegmentor, seg_losses
from .prompt_text import (
    PROMPT_WARNING_CODES,
    PromptCodec,
    PromptGroup,
    PromptParse,
    PromptWarning,
)
from .resampler import CrossAttnResampler, sincos_2d
from .transforms import (
    POINT_QUESTION,
    SAM4MLLMConversation,
    SamPromptAnswerFormat,
    SamPromptSample,
    sample_points,
)

#: The project's template folder for ``FormatConversation(extra_template_dirs=...)``.
TEMPLATE_DIR = 'projects.sam4mllm.sam4mllm_seg:templates'

__all__ = [
    'CrossAttnResampler',
    'POINT_QUESTION',
    'PROMPT_WARNING_CODES',
    'TEMPLATE_DIR',
    'PromptCodec',
    'PromptGroup',
    'PromptIoUMetric',
    'PromptParse',
    'PromptWarning',
    'PromptableSam',
    'SAM4MLLM',
    'SAM4MLLMConversation',
    'SamPromptAnswerFormat',
    'SamPromptSample',
    'SamPromptSegmentor',
    'sample_points',
    'seg_losses',
    'sincos_2d',
]
