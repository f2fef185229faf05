# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""Helpers for end-to-end tests of configs through ``tools/train.py`` and ``tools/test.py`` (core
and plugin tests): the tools as modules, the demo dataset, and an LLM whose greedy choice is
scripted."""

from __future__ import annotations

import importlib.util
import os
import os.path as osp
from collections.abc import Mapping, Sequence
from types import ModuleType
from typing import Any

import torch
from torch import nn

REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
DEMO_ROOT = osp.join(REPO_ROOT, 'data', 'demo')


def subprocess_pythonpath(environ: Mapping[str, str] | None = None) -> str:
    """``PYTHONPATH`` for a tool or torchrun subprocess: the repository first, then the caller's.

    Prepending (rather than replacing) keeps packages that the caller reaches through
    ``PYTHONPATH`` (``pip install --target`` trees, site folders of a cluster module) importable
    in the child, while ``mmrefvlm`` and ``projects.*`` still resolve to this checkout.

    Args:
        environ (Mapping[str, str], optional): The caller's environment (default ``os.environ``).

    Returns:
        str: ``REPO_ROOT`` followed by the caller's entries, without duplicates or empty entries.
    """
    env = os.environ if environ is None else environ
    parts = [REPO_ROOT] + [p for p in env.get('PYTHONPATH', '').split(os.pathsep) if p]
    return os.pathsep.join(dict.fromkeys(parts))


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


def script_generation(
    monkeypatch: Any, answer: str, tokenizer: str | Mapping[str, Any] = 'demo'
) -> list[int]:
    """Make every ``RefVLM.predict`` generate ``answer`` (a TRP string, EOS appended) through
    :class:`ScriptedLM`, so the routed ``<REF>`` states, the decoders and everything after them
    run for real on a model too young to write TRP.

    Args:
        monkeypatch (pytest.MonkeyPatch): Patches ``mmrefvlm.models.refvlm.greedy_generate``.
        answer (str): The answer every sample of every batch generates.
        tokenizer (str | Mapping): ``build_tokenizer`` source, or its kwargs (e.g. a config's
            ``model.tokenizer`` with ``extra_tokens``), that encodes ``answer``.

    Returns:
        list[int]: Filled with the batch size of each generation call.
    """
    from mmrefvlm.models import refvlm as refvlm_module
    from mmrefvlm.tokenization import build_tokenizer

    if isinstance(tokenizer, str):
        tok = build_tokenizer(tokenizer)
    else:
        tok = build_tokenizer(**{k: v for k, v in dict(tokenizer).items() if k != 'type'})
    ids = tok.encode(answer) + [tok.ids.eos]
    real_generate = refvlm_module.greedy_generate
    calls: list[int] = []

    def scripted_generate(llm: nn.Module, embeds: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        calls.append(int(embeds.shape[0]))
        scripted: Any = ScriptedLM(llm, ids)  # duck-types the HF model API that generation uses
        return real_generate(scripted, embeds, *args, **kwargs)

    monkeypatch.setattr(refvlm_module, 'greedy_generate', scripted_generate)
    return calls


def train_then_test_scripted(
    config: str,
    work_dir: str,
    monkeypatch: Any,
    answer: str,
    test_args: Sequence[str] = (),
    tokenizer: Mapping[str, Any] | None = None,
    test_subset: Sequence[str] = ('test_dataloader.dataset.indices=2',),
) -> tuple[str, dict, list]:
    """Run a config through the real tools on tiny budgets, with a scripted LLM answer at test time.

    ``tools/train.py`` trains 2 iterations (batch 2) and writes ``iter_2.pth``; ``tools/test.py``
    then evaluates that checkpoint on a few samples of the test split (``test_subset``), with
    greedy decoding forced to emit ``answer`` (EOS is appended) so that the routed ``<REF>`` states,
    the decoders and the metrics all run for real on a model too young to write TRP itself.

    Args:
        config (str): Config path.
        work_dir (str): Parent folder; ``train`` and ``test`` sub-folders are created.
        monkeypatch (pytest.MonkeyPatch): Used to script ``greedy_generate`` and to record the
            samples that ``RefVLM.predict`` returns.
        answer (str): The answer every test sample generates (TRP, or the config's own answer
            format).
        test_args (Sequence[str]): More ``tools/test.py`` arguments (e.g. ``--show-dir DIR``).
        tokenizer (Mapping, optional): ``build_tokenizer`` kwargs that encode ``answer``.
            Defaults to the config's ``model.tokenizer`` (so extra tokens such as ``[SEG]`` are
            single tokens).
        test_subset (Sequence[str]): ``--cfg-options`` that cut the test split to a few samples
            (default: the first 2 of a single dataset; a ``ConcatDataset`` split needs
            ``test_dataloader.dataset.datasets.<i>.indices=...`` per dataset).

    Returns:
        tuple: ``(checkpoint path, metrics dict of tools/test.py, predicted data samples)``.
    """
    from mmrefvlm.models import refvlm as refvlm_module

    common = [
        'train_dataloader.batch_size=2',
        'test_dataloader.batch_size=2',
        *test_subset,
        'model.max_new_tokens=24',
    ]
    train_dir, test_dir = osp.join(work_dir, 'train'), osp.join(work_dir, 'test')
    load_tool('train').main(
        [
            config,
            '--work-dir',
            train_dir,
            '--cfg-options',
            'train_cfg.max_iters=2',
            'train_cfg.val_interval=100',
            'default_hooks.checkpoint.interval=2',
            *common,
        ]
    )
    ckpt = osp.join(train_dir, 'iter_2.pth')
    if tokenizer is None:
        from mmengine.config import Config

        tokenizer = Config.fromfile(config).model.tokenizer
    scripted_calls = script_generation(monkeypatch, answer, tokenizer)
    predicted: list = []
    real_predict = refvlm_module.RefVLM.predict

    def recording_predict(self: Any, inputs: dict, data_samples: list) -> list:
        samples = real_predict(self, inputs, data_samples)
        predicted.extend(samples)
        return samples

    monkeypatch.setattr(refvlm_module.RefVLM, 'predict', recording_predict)
    metrics = load_tool('test').main(
        [config, ckpt, '--work-dir', test_dir, *test_args, '--cfg-options', *common]
    )
    assert scripted_calls, 'tools/test.py never generated: the scripted answer was not used'
    return ckpt, metrics, predicted
