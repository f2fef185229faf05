# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""Optimizer wrappers that skip (or stop on) steps whose loss or gradients are not finite.

One NaN/Inf loss in a long run otherwise writes NaN into every weight (AdamW moments included)
and the run is lost. :class:`NaNGuardOptimWrapper` always runs the backward pass first (skipping
it on one rank would leave DDP's gradient all-reduce waiting forever), then decides with *every*
rank: the "all finite" flag is all-reduced with MIN, so either all ranks step or all skip. A
skipped step zeroes the gradients, leaves weights and optimizer state untouched, is counted and
logged (``print_log`` warning and the message-hub scalar ``train/nonfinite_skips``, the running
count), and with ``action='stop'`` training raises :class:`NonFiniteLossError` once
``max_consecutive`` consecutive steps were non-finite.

With ``sharded_grads=True`` (FSDP: each rank holds a shard of every gradient) gradient clipping
uses the *global* norm, all-reduced over the ranks, instead of each rank's shard norm; otherwise
every rank would clip by a different factor and the run would silently differ from DDP.

Config (replaces ``OptimWrapper`` in ``optim_wrapper``)::

    optim_wrapper = dict(type='NaNGuardOptimWrapper', action='skip', max_consecutive=10,
                         optimizer=dict(type='AdamW', lr=1e-4), clip_grad=dict(max_norm=1.0))
"""

from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING, TypeAlias

import torch
from mmengine.device import get_device
from mmengine.dist import all_reduce
from mmengine.logging import print_log
from mmengine.optim import AmpOptimWrapper, OptimWrapper
from torch import Tensor

from mmrefvlm.registry import OPTIM_WRAPPERS

__all__ = ['NaNGuardOptimWrapper', 'NaNGuardAmpOptimWrapper', 'NonFiniteLossError']

_ACTIONS = ('skip', 'stop')
_STATE_KEY = 'nan_guard'


class NonFiniteLossError(FloatingPointError):
    """Training stopped: too many consecutive steps with a non-finite loss or gradient."""


if TYPE_CHECKING:
    # for the type checker the mixin is an OptimWrapper (it is only ever mixed into one); at
    # runtime it stays a plain mixin so that the MRO of the concrete wrappers is unchanged
    _GuardBase: TypeAlias = OptimWrapper
else:
    _GuardBase = object


class _NaNGuardMixin(_GuardBase):
    """The guard logic, shared by the fp32 and the AMP wrapper (see the module docstring)."""

    def _init_guard(
        self, action: str, max_consecutive: int, check_grads: bool, sharded_grads: bool = False
    ) -> None:
        if action not in _ACTIONS:
            raise ValueError(f'action must be one of {_ACTIONS}, got {action!r}')
        if not isinstance(max_consecutive, int) or max_consecutive < 1:
            raise ValueError(f'max_consecutive must be a positive int, got {max_consecutive!r}')
        self.action, self.max_consecutive, self.check_grads = action, max_consecutive, check_grads
        self.sharded_grads = bool(sharded_grads)
        self.num_skipped = 0  # skipped optimizer steps, in total (resumed from checkpoints)
        self.num_consecutive = 0  # current run of skipped steps
        self._window_finite = True  # all losses since the last step were finite (accumulation)

    def update_params(
        self, loss: Tensor, step_kwargs: dict | None = None, zero_kwargs: dict | None = None
    ) -> None:
        """Backward; at an update step, step only if every rank's loss (and gradients) are finite.

        Args:
            loss (Tensor): () float, the summed loss of this iteration on this rank.
            step_kwargs (dict, optional): Passed to ``step``.
            zero_kwargs (dict, optional): Passed to ``zero_grad``.

        Raises:
            NonFiniteLossError: ``action='stop'`` and ``max_consecutive`` consecutive update steps
                were skipped.
        """
        step_kwargs, zero_kwargs = step_kwargs or {}, zero_kwargs or {}
        self._window_finite &= bool(torch.isfinite(loss.detach()).all())
        self.backward(self.scale_loss(loss))  # always: DDP all-reduces inside backward
        if not self.should_update():
            return
        finite = self._window_finite and (not self.check_grads or self._grads_finite())
        self._window_finite = True
        flag = torch.tensor(float(finite), device=loss.device)
        all_reduce(flag, op='min')  # all ranks decide together (no-op when not distributed)
        if flag.item() > 0:
            self.num_consecutive = 0
            self.step(**step_kwargs)
        else:
            self._skip(loss)
        self.zero_grad(**zero_kwargs)
        self.message_hub.update_scalar('train/nonfinite_skips', self.num_skipped)

    def _grads_finite(self) -> bool:
        grads = [
            p.grad for g in self.optimizer.param_groups for p in g['params'] if p.grad is not None
        ]
        if not grads:
            return True
        total = torch.nn.utils.get_total_norm(grads, norm_type=2.0, error_if_nonfinite=False)
        return bool(torch.isfinite(total))

    def _clip_grad(self) -> None:
        """Clip by the global norm when gradients are sharded (see the module docstring)."""
        if not self.sharded_grads or self.clip_func is not torch.nn.utils.clip_grad_norm_:
            super()._clip_grad()
            return
        params = [
            p
            for g in self.optimizer.param_groups
            for p in g['params']
            if p.requires_grad and p.grad is not None
        ]
        kwargs = dict(self.clip_grad_kwargs)
        max_norm, norm_type = kwargs.pop('max_norm'), float(kwargs.pop('norm_type', 2.0))
        total = sharded_grad_norm([p.grad for p in params], norm_type)  # every rank takes part
        if params:
            torch.nn.utils.clip_grads_with_norm_(
                params, max_norm, total, foreach=kwargs.get('foreach')
            )
        self.message_hub.update_scalar(f'train/{self.grad_name}', float(total))

    def _skip(self, loss: Tensor) -> None:
        self.num_skipped += 1
        self.num_consecutive += 1
        it = self.message_hub.get_info('iter')
        where = f'iteration {it + 1}' if isinstance(it, int) else 'this step'
        msg = (
            f'NaNGuard: non-finite loss or gradient at {where} on at least one rank (this '
            f'rank: loss={float(loss.detach()):.4g}); optimizer step skipped, weights unchanged '
            f'({self.num_consecutive} in a row, {self.num_skipped} in total)'
        )
        print_log(msg, logger='current', level=logging.WARNING)
        if self.action == 'stop' and self.num_consecutive >= self.max_consecutive:
            raise NonFiniteLossError(
                f'{msg}. Stopping: {self.num_consecutive} consecutive non-finite steps reached '
                f'max_consecutive={self.max_consecutive}. Lower the learning rate, check the data '
                'of these iterations, or use action="skip".'
            )

    def state_dict(self) -> dict:
        """The wrapped optimizer's state plus the skip counters (``nan_guard`` key)."""
        state = super().state_dict()
        state[_STATE_KEY] = dict(num_skipped=self.num_skipped, num_consecutive=self.num_consecutive)
        return state

    def load_state_dict(self, state_dict: dict) -> None:
        """Restore the counters (when saved) and the wrapped optimizer."""
        state_dict = dict(state_dict)
        guard = state_dict.pop(_STATE_KEY, None)
        if guard is not None:
            self.num_skipped = int(guard['num_skipped'])
            self.num_consecutive = int(guard['num_consecutive'])
        super().load_state_dict(state_dict)


def sharded_grad_norm(grads: list[Tensor], norm_type: float = 2.0) -> Tensor:
    """The norm of the full gradient when each rank holds disjoint shards of it.

    Args:
        grads (list[Tensor]): This rank's gradient shards (may be empty).
        norm_type (float): p of the p-norm; ``inf`` for the max norm.

    Returns:
        Tensor: () float32, the same on every rank (all-reduced; the local norm when not
        distributed).
    """
    device = grads[0].device if grads else torch.device(get_device())
    if math.isinf(norm_type):
        local = max((g.detach().abs().max().float() for g in grads), default=None)
        total = torch.zeros((), device=device) if local is None else local.to(device)
        all_reduce(total, op='max')
        return total
    total = torch.zeros((), device=device)
    for g in grads:
        total += g.detach().float().norm(norm_type) ** norm_type
    all_reduce(total, op='sum')
    return total ** (1.0 / norm_type)


@OPTIM_WRAPPERS.register_module()
class NaNGuardOptimWrapper(_NaNGuardMixin, OptimWrapper):
    """``OptimWrapper`` that skips (``action='skip'``) or stops on non-finite steps.

    Args:
        optimizer (Optimizer): The optimizer.
        action (str): ``'skip'``: skip the step, log and continue. ``'stop'``: skip too, and raise
            :class:`NonFiniteLossError` once ``max_consecutive`` consecutive steps were skipped.
            Default ``'skip'``.
        max_consecutive (int): See ``action``. Default 10.
        check_grads (bool): Also skip when the total gradient norm is not finite (a finite loss
            can still back-propagate Inf). Default True.
        sharded_grads (bool): Gradients are sharded over the ranks (FSDP): clip by the
            all-reduced global norm. Default False.
        **kwargs: ``OptimWrapper`` arguments (``accumulative_counts``, ``clip_grad``).
    """

    def __init__(
        self,
        optimizer,
        action: str = 'skip',
        max_consecutive: int = 10,
        check_grads: bool = True,
        sharded_grads: bool = False,
        **kwargs,
    ) -> None:
        super().__init__(optimizer, **kwargs)
        self._init_guard(action, max_consecutive, check_grads, sharded_grads)


@OPTIM_WRAPPERS.register_module()
class NaNGuardAmpOptimWrapper(_NaNGuardMixin, AmpOptimWrapper):
    """``AmpOptimWrapper`` with the loss guard of :class:`NaNGuardOptimWrapper`.

    ``check_grads`` defaults to False here: the ``GradScaler`` already skips steps whose scaled
    gradients overflow and lowers its scale; skipping those steps ourselves would stop it from
    adapting. Arguments as :class:`NaNGuardOptimWrapper`, plus ``AmpOptimWrapper``'s.
    """

    def __init__(
        self,
        optimizer,
        action: str = 'skip',
        max_consecutive: int = 10,
        check_grads: bool = False,
        sharded_grads: bool = False,
        **kwargs,
    ) -> None:
        super().__init__(optimizer=optimizer, **kwargs)
        self._init_guard(action, max_consecutive, check_grads, sharded_grads)
