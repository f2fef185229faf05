# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""Config loading and runner building shared by ``tools/train.py`` and ``tools/test.py``."""
from __future__ import annotations

import os.path as osp
from collections.abc import Mapping

from mmengine.config import Config
from mmengine.runner import Runner
from mmengine.utils import import_modules_from_strings


def load_config(path: str, *, cfg_options: Mapping | None = None, work_dir: str | None = None,
                launcher: str = 'none') -> Config:
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
    if 'runner_type' in cfg:
        from mmrefvlm.registry import RUNNERS
        return RUNNERS.build(cfg)
    return Runner.from_cfg(cfg)
