# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""Helpers for end-to-end tests of configs through ``tools/train.py`` and ``tools/test.py`` (core
and plugin tests): the tools as modules, the demo dataset, and an LLM whose greedy choice is
scripted."""

from __future__ import annotations

import importlib.util
import os.path as osp
from collections.abc import Sequence
from types import ModuleType
from typing import Any

import torch
from torch import nn

REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
DEMO_ROOT = osp.join(REPO_ROOT, 'data', 'demo')


def load_tool(name: str) -> ModuleType:
    """``tools/<name>.py`` as a module (under a unique name: ``test`` is also a stdlib package)."""
    spec = importlib.util.spec_from_file_location(
        f'mmrefvlm_tools_{name}', osp.join(REPO_ROOT, 'tools', f'{name}.py')
    )
    assert spec is not None and spec.loader is not None  # a .py path always gets a source loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def demo_data_root() -> str:
    """``data/demo`` of the repository, generated (deterministically, ~10 s) when missing."""
    if not osp.isfile(osp.join(DEMO_ROOT, 'metainfo.json')):
        from mmrefvlm.datasets import ensure_demo_dataset

        ensure_demo_dataset(DEMO_ROOT)
    return DEMO_ROOT


class ScriptedLM:
    """Wraps an HF causal LM so that greedy decoding emits a fixed token script, while the hidden
    states (what the router sends to the decoders) stay the real model's. A model trained for two
    steps writes no TRP yet; this lets a test drive the whole predict path through the tools.

    Pass it to ``greedy_generate`` (monkeypatch ``mmrefvlm.models.refvlm.greedy_generate``).
    """

    def __init__(self, llm: nn.Module, ids: Sequence[int]) -> None:
        self.llm: Any = llm  # an HF PreTrainedModel: nn.Module does not declare its API
        self.ids, self.calls = list(ids), 0

    def get_decoder(self) -> nn.Module:  # noqa: D102
        return self.llm.get_decoder()

    def get_input_embeddings(self) -> nn.Module:  # noqa: D102
        return self.llm.get_input_embeddings()

    def get_output_embeddings(self):  # noqa: D102
        vocab = self.llm.get_input_embeddings().weight.shape[0]

        def head(h: torch.Tensor) -> torch.Tensor:
            logits = torch.zeros(h.shape[0], vocab, device=h.device)
            logits[:, self.ids[min(self.calls, len(self.ids) - 1)]] = 1.0
            self.calls += 1
            return logits

        return head
