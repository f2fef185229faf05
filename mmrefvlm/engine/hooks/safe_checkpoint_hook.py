# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""Write checkpoints that load with ``torch.load(weights_only=True)`` and resume exactly."""

from __future__ import annotations

from mmengine.hooks import Hook

from mmrefvlm.registry import HOOKS
from mmrefvlm.utils.checkpoint import decode_safe, encode_safe

_ENCODED_KEYS = ('meta', 'message_hub', 'param_schedulers')


@HOOKS.register_module()
class SafeCheckpointHook(Hook):
    """Encode MMEngine's pickled objects on save and decode them on load.

    MMEngine stores ``HistoryBuffer`` objects and numpy values in ``message_hub`` and ``meta``;
    torch refuses those under ``weights_only=True``. This hook rewrites them as tensors and plain
    containers just before saving (lowest priority, so after every other hook has added its
    fields) and restores them right after loading (highest priority), so ``runner.resume`` sees
    exactly the objects it saved. Optimizer and model states are tensors already and pass through.
    """

    priority = 'LOWEST'

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:  # noqa: D102
        for key in _ENCODED_KEYS:
            if key in checkpoint:
                checkpoint[key] = encode_safe(checkpoint[key])

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:  # noqa: D102
        for key in _ENCODED_KEYS:
            if key in checkpoint:
                checkpoint[key] = decode_safe(checkpoint[key])
