# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""MMEngine's ``FSDPStrategy`` on any device: CUDA (nccl) on GPUs, CPU (gloo) elsewhere.

MMEngine's strategy hands FSDP ``device_id=int(LOCAL_RANK)``, which FSDP reads as a CUDA device,
and its ``init_dist`` calls ``torch.cuda.set_device``; both fail on a machine without CUDA. This
subclass passes ``device_id`` as a ``torch.device`` (``cuda:<LOCAL_RANK>`` or ``cpu``) and, on CPU,
starts the process group itself (gloo). Everything else (sharding, state dicts, optimizer
sharding) is MMEngine's. The same config therefore runs the 2-rank CPU test in CI and a GPU job.
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Sequence

import torch
import torch.distributed as torch_dist
from mmengine._strategy.fsdp import FSDPStrategy
from torch.distributed.fsdp import FullyShardedDataParallel as FSDP

from mmrefvlm.registry import FUNCTIONS, STRATEGIES

__all__ = ['DeviceAwareFSDPStrategy', 'fsdp_device', 'layer_name_wrap_policy']


def fsdp_device() -> torch.device:
    """``cuda:<LOCAL_RANK>`` when CUDA is available, else ``cpu``."""
    if torch.cuda.is_available():
        return torch.device('cuda', int(os.environ.get('LOCAL_RANK', 0)))
    return torch.device('cpu')


@FUNCTIONS.register_module()
def layer_name_wrap_policy(
    module: torch.nn.Module,
    recurse: bool,
    nonwrapped_numel: int,
    layer_names: Sequence[str] = ('LlamaDecoderLayer',),
) -> bool:
    """FSDP auto-wrap policy: one FSDP unit per module whose class name is in ``layer_names``.

    Class names instead of classes keep the config plain data and independent of the LLM family
    (``'LlamaDecoderLayer'``, ``'MistralDecoderLayer'``, ``'CLIPEncoderLayer'``...). Use as
    ``model_wrapper=dict(auto_wrap_policy=dict(type=layer_name_wrap_policy, layer_names=[...]))``.

    Args:
        module (nn.Module): The candidate module.
        recurse (bool): FSDP asks whether to look inside ``module`` (always yes).
        nonwrapped_numel (int): Parameters not yet wrapped (unused).
        layer_names (Sequence[str]): Class names that become their own FSDP unit.

    Returns:
        bool: Recurse, or wrap this module.
    """
    return True if recurse else type(module).__name__ in layer_names


@STRATEGIES.register_module()
class DeviceAwareFSDPStrategy(FSDPStrategy):
    """``FSDPStrategy`` whose FSDP wrapper and process group follow the machine's device.

    Takes the arguments of MMEngine's ``FSDPStrategy``. A ``device_id`` given in
    ``model_wrapper`` is kept. Fixes to MMEngine 0.10.7:

    * resuming loads the optimizer state with torch's argument order of
      ``FSDP.optim_state_dict_to_load`` (MMEngine passes the state first, which fails with
      ``unhashable type: 'dict'``);
    * the optimizer wrapper's own entries (the NaN guard's counters), which
      ``FSDP.optim_state_dict`` drops, are saved and restored;
    * on CPU the full state dicts are gathered without ``offload_to_cpu`` (the tensors are there
      already, and torch 2.13 crashes with SIGSEGV when asked to offload CPU tensors).
    """

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        if not torch.cuda.is_available():
            for config in (self.state_dict_config, self.optim_state_dict_config):
                if getattr(config, 'offload_to_cpu', False):
                    config.offload_to_cpu = False

    def _setup_distributed(  # type: ignore[override]
        self, launcher: str = 'pytorch', backend: str = 'nccl', **kwargs
    ) -> None:
        if torch.cuda.is_available() or torch_dist.is_initialized():
            super()._setup_distributed(launcher, backend, **kwargs)
            return
        if launcher != 'pytorch':
            raise RuntimeError(f'FSDP on CPU supports --launcher pytorch only, got {launcher!r}')
        if backend == 'nccl':
            raise RuntimeError(
                "env_cfg.dist_cfg.backend='nccl' needs CUDA GPUs; on CPU use "
                '--cfg-options env_cfg.dist_cfg.backend=gloo'
            )
        timeout = kwargs.pop('timeout', None)
        if timeout is not None:
            kwargs['timeout'] = datetime.timedelta(seconds=timeout)
        torch_dist.init_process_group(backend=backend, **kwargs)

    def _wrap_model(self, model: torch.nn.Module):  # noqa: D102 (see the class docstring)
        current: dict | None = getattr(self, 'model_wrapper', None)
        wrapper = dict(current or dict(type='MMFullyShardedDataParallel'))
        wrapper.setdefault('device_id', fsdp_device())
        self.model_wrapper = wrapper
        return super()._wrap_model(model)

    def build_optim_wrapper(self, optim_wrapper, model=None):  # noqa: D102
        # Under FSDP every gradient is sharded: norm clipping must use the global norm. Our
        # NaN-guard wrappers do that with ``sharded_grads``, which follows from this strategy;
        # any other wrapper would clip each shard by its own norm, so it may not clip by norm.
        wrapper = super().build_optim_wrapper(optim_wrapper, model)
        for w in getattr(wrapper, 'optim_wrappers', {'': wrapper}).values():
            if hasattr(w, 'sharded_grads'):
                w.sharded_grads = True
            elif getattr(w, 'clip_func', None) is torch.nn.utils.clip_grad_norm_:
                raise ValueError(
                    f'{type(w).__name__} clips each FSDP shard by its own norm; use '
                    'NaNGuardOptimWrapper / NaNGuardAmpOptimWrapper (global-norm clipping)'
                )
        return wrapper

    def optim_state_dict(self) -> dict:
        """FSDP's optimizer state plus the wrapper's own entries (e.g. ``nan_guard``)."""
        state = FSDP.optim_state_dict(self.model, self.optim_wrapper.optimizer)
        extra = {
            k: v
            for k, v in self.optim_wrapper.state_dict().items()
            if k not in ('state', 'param_groups')
        }
        return {**state, **extra}

    def load_optim_state_dict(self, state_dict: dict) -> None:
        """Load a state written by :meth:`optim_state_dict` into the sharded optimizer."""
        core = {k: state_dict[k] for k in ('state', 'param_groups') if k in state_dict}
        extra = {k: v for k, v in state_dict.items() if k not in core}
        optim = self.optim_wrapper.optimizer
        loaded = FSDP.optim_state_dict_to_load(self.model, optim, core)
        self.optim_wrapper.load_state_dict({**loaded, **extra})
