# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""Data-flow contract of mmrefvlm.

1. A dataset record (JSONL, ``docs/data_format.md``) is loaded by ``RefVLMDataset``.
2. Transforms (``mmrefvlm.datasets.transforms``) load the image, pad it to a square, resize it per
   encoder, rasterise visual prompts, render + tokenize the conversation (prompt masked from the
   labels; the ``<REF>`` tokens of the labels are parsed once, ``label_refs``) and put the targets
   in the square frame. ``PackRefVLMInputs`` emits ``dict(inputs=dict(input_ids, labels,
   images={encoder: uint8 (3, S_e, S_e)}, visual_prompts=(P, M, M) bool),
   data_samples=RefVLMDataSample)``.
3. ``RefVLMDataPreprocessor`` pads text right (attention mask = real tokens), normalises and stacks
   images per encoder, keeps numpy copies of the token data (``inputs['host']``, a
   :class:`HostBatch`) and moves everything else to the device. ``RefVLM`` plans each step from
   the host data (placeholder and label positions, routing, matching layout), so its loss reads
   nothing back from the device but the matching costs (:class:`QueryLayout`).
4. ``RefVLM.forward(inputs, data_samples, mode)``: encoders -> ``VisualContext``; mask-guided
   aggregation of prompts; shared projector; splice at ``<image>`` / ``[VPT]`` tokens; LLM; the
   router turns ``<REF>`` states into one ``UnitQueries`` per unit; each decoder's ``loss`` /
   ``predict``.
5. Metrics read ``pred_*`` / ``gt_*`` fields of ``RefVLMDataSample`` (as dicts).
"""

from .model_io import HostBatch, MatchLayout, QueryLayout, UnitQueries, VisualContext
from .refvlm_data_sample import RefVLMDataSample, SampleList

__all__ = [
    'RefVLMDataSample',
    'SampleList',
    'UnitQueries',
    'VisualContext',
    'HostBatch',
    'QueryLayout',
    'MatchLayout',
]
