# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""Config loading and runner building shared by ``tools/train.py`` and ``tools/test.py``."""

from __future__ import annotations

import os.path as osp
from collections.abc import Mapping

from mmengine.config import Config
from mmengine.runner import Runner
from mmengine.utils import import_modules_from_strings


def load_config(
    path: str,
    *,
    cfg_options: Mapping | None = None,
    work_dir: str | None = None,
    launcher: str = 'none',
) -> Config:
    """Read a config, apply ``--cfg-options``, import ``custom_imports`` (also for lazy
    ``read_base`` configs, where MMEngine does not), and fill ``work_dir`` / ``launcher``."""
    if not osp.isfile(path):
        raise FileNotFoundError(f'config file {path!r} does not exist')
    cfg = Config.fromfile(path)
    if cfg_options:
        cfg.merge_from_dict(dict(cfg_options))
    imports = cfg.get('custom_imports')
    if imports:
        import_modules_from_strings(**dict(imports))
    cfg.launcher = launcher
    if work_dir is not None:
        cfg.work_dir = work_dir
    elif cfg.get('work_dir') is None:
        cfg.work_dir = osp.join('./work_dirs', osp.splitext(osp.basename(path))[0])
    return cfg


def build_runner(cfg: Config) -> Runner:
    """Build the runner named by ``runner_type`` (default MMEngine ``Runner``)."""
    setup_cpu_distributed(cfg)
    if 'runner_type' in cfg:
        from mmrefvlm.registry import RUNNERS

        return RUNNERS.build(cfg)
    return Runner.from_cfg(cfg)


# --------------------------------------------------------------------------- CPU (gloo) DDP
def setup_cpu_distributed(cfg: Config) -> None:
    """Make ``--launcher pytorch`` work on machines without CUDA (gloo backend).

    MMEngine's ``init_dist`` always calls ``torch.cuda.set_device`` and its DDP wrapper passes
    ``device_ids=[LOCAL_RANK]``; both fail on CPU. When the launcher is ``pytorch`` and CUDA is
    unavailable this initialises the process group itself (MMEngine then skips ``init_dist``) and
    sets ``device_ids=None`` on the DDP wrapper. A no-op otherwise.

    Raises:
        RuntimeError: ``env_cfg.dist_cfg.backend`` is ``nccl`` on a machine without CUDA.
    """
    import datetime

    import torch
    import torch.distributed as torch_dist
    from mmengine.registry import MODEL_WRAPPERS
    from torch.nn.parallel import DistributedDataParallel

    if cfg.get('launcher', 'none') != 'pytorch' or torch.cuda.is_available():
        return
    dist_cfg = dict(cfg.get('env_cfg', {}).get('dist_cfg', None) or {})
    backend = dist_cfg.pop('backend', 'gloo')
    if backend == 'nccl':
        raise RuntimeError(
            "env_cfg.dist_cfg.backend='nccl' needs CUDA GPUs; on CPU use "
            '--cfg-options env_cfg.dist_cfg.backend=gloo'
        )
    if not torch_dist.is_initialized():
        if dist_cfg.get('timeout') is not None:
            dist_cfg['timeout'] = datetime.timedelta(seconds=dist_cfg['timeout'])
        torch_dist.init_process_group(backend=backend, **dist_cfg)
    wrapper = dict(cfg.get('model_wrapper_cfg', None) or {})
    wrapper.setdefault('type', 'MMDistributedDataParallel')
    cls = wrapper['type']
    cls = MODEL_WRAPPERS.get(cls) if isinstance(cls, str) else cls
    if isinstance(cls, type) and issubclass(cls, DistributedDataParallel):
        wrapper.setdefault('device_ids', None)
        wrapper.setdefault('broadcast_buffers', False)
        wrapper.setdefault('find_unused_parameters', cfg.get('find_unused_parameters', False))
    cfg.model_wrapper_cfg = wrapper
