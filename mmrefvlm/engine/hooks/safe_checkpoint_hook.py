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
    containers just before saving and restores them after loading, so ``runner.resume`` sees
    exactly the objects it saved. Optimizer and model states are tensors already and pass through.

    Priority LOWEST, for both: MMEngine calls every hook method in one priority order, and saving
    decides it. Encoding must come after every other hook's ``before_save_checkpoint`` has added
    its fields, or the file would not load. On load, running last is early enough: the Runner
    reads these keys only after all hooks ran, and MMEngine's own hooks read only the state dicts
    there (``EMAHook``). A custom hook that reads ``meta``, ``message_hub`` or
    ``param_schedulers`` in ``after_load_checkpoint`` sees them encoded.
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
