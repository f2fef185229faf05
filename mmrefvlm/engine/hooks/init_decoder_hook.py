# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""Initialise a new unit decoder from another decoder of an earlier-stage checkpoint (stage 3:
"the keypoint decoder was initialized with the weights of the box decoder", REF-VLM App. D)."""

from __future__ import annotations

from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.model import is_model_wrapper

from mmrefvlm.registry import HOOKS
from mmrefvlm.utils.checkpoint import load_state_file


@HOOKS.register_module()
class InitUnitDecoderHook(Hook):
    """Before training starts (not on resume), copy ``unit_decoders.<src>.*`` of ``checkpoint`` into
    ``unit_decoders.<dst>`` through that decoder's ``init_from_<src>_decoder`` method.

    Args:
        checkpoint (str): Earlier-stage checkpoint (``.pth`` or ``.safetensors``; weights-only).
        src (str): Source unit in the checkpoint, e.g. ``'box'``.
        dst (str): Target unit of the model being trained, e.g. ``'keypoint'``.
    """

    priority = 'VERY_HIGH'

    def __init__(self, checkpoint: str, src: str = 'box', dst: str = 'keypoint') -> None:
        self.checkpoint, self.src, self.dst = checkpoint, src, dst

    def before_train(self, runner) -> None:  # noqa: D102
        if runner.iter > 0:  # resumed: the decoder already holds trained weights
            return
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        if self.dst not in model.unit_decoders:
            raise ValueError(
                f'the model has no {self.dst!r} decoder; decoders: {sorted(model.unit_decoders)}'
            )
        decoder = model.unit_decoders[self.dst]
        init = getattr(decoder, f'init_from_{self.src}_decoder', None)
        if init is None:
            raise TypeError(
                f'{type(decoder).__name__} cannot be initialised from a {self.src} '
                f'decoder (no init_from_{self.src}_decoder method)'
            )
        state = load_state_file(self.checkpoint)
        state = state.get('state_dict', state)
        prefix = f'unit_decoders.{self.src}.'
        sub = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
        if not sub:
            raise ValueError(f'{self.checkpoint!r} holds no {prefix}* weights')
        report = init(sub)
        print_log(
            f'initialised the {self.dst} decoder from the {self.src} decoder of '
            f'{self.checkpoint}: {len(report.get("loaded", []))} tensors copied, '
            f'{len(report.get("missing", []))} left as initialised',
            logger='current',
        )
