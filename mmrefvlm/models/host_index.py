# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""Host-built index tensors on their way to the device: one pinned, non-blocking copy per step."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

__all__ = ['IndexPack', 'host_to_device']


def host_to_device(tensor: Tensor, device: torch.device | str) -> Tensor:
    """Copy a host tensor to ``device`` without blocking the host.

    On an accelerator the tensor is pinned first, so ``non_blocking=True`` is a real asynchronous
    copy (from pageable memory the copy would wait for the stream). On the CPU it is returned as
    is (``.to`` without a copy).

    Args:
        tensor (Tensor): A CPU tensor (host memory), not modified afterwards by the caller.
        device (torch.device | str): Target device.

    Returns:
        Tensor: On ``device``.
    """
    device = torch.device(device)
    if device.type != 'cpu':
        try:
            tensor = tensor.pin_memory()
        except RuntimeError:  # no pinning on this build/accelerator: a plain copy
            pass
    return tensor.to(device, non_blocking=True)


class IndexPack:
    """Host int64 arrays that travel to the device together.

    ``add`` collects arrays (any shape, flattened) and returns a handle; ``to(device)`` copies all
    of them in one pinned, non-blocking transfer and returns the device tensors, indexed by handle.

    Example:
        >>> pack = IndexPack()
        >>> a, b = pack.add([0, 2]), pack.add(np.arange(3))
        >>> dev = pack.to('cpu')
        >>> dev[a], dev[b]
        (tensor([0, 2]), tensor([0, 1, 2]))
    """

    def __init__(self) -> None:
        self._arrays: list[np.ndarray] = []

    def add(self, values) -> int:
        """Add a 1-D int64 copy of ``values``; returns its handle."""
        self._arrays.append(np.asarray(values, dtype=np.int64).reshape(-1))
        return len(self._arrays) - 1

    def __len__(self) -> int:
        return len(self._arrays)

    def to(self, device: torch.device | str) -> list[Tensor]:
        """All arrays on ``device`` (views of one buffer), in ``add`` order."""
        if not self._arrays:
            return []
        flat = torch.from_numpy(np.concatenate(self._arrays))
        sizes = [a.size for a in self._arrays]
        return list(host_to_device(flat, device).split(sizes))
