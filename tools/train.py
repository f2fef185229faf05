# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""Train a model: ``python tools/train.py CONFIG [--work-dir DIR] [--resume [CKPT]] ...``."""

from __future__ import annotations

import argparse
import os
import os.path as osp
import sys

REPO_ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
if REPO_ROOT not in sys.path:  # so that `projects.*` plugins import without PYTHONPATH tricks
    sys.path.insert(0, REPO_ROOT)


def parse_args(argv=None) -> argparse.Namespace:
    from mmengine.config import DictAction

    p = argparse.ArgumentParser(description='Train an mmrefvlm model')
    p.add_argument('config', help='config file path')
    p.add_argument(
        '--work-dir', help='directory for logs and checkpoints (default: ./work_dirs/<config name>)'
    )
    p.add_argument(
        '--resume',
        nargs='?',
        type=str,
        const='auto',
        help='resume from CKPT, or from the latest checkpoint in the work dir when no '
        'path is given',
    )
    p.add_argument('--amp', action='store_true', help='bf16 automatic mixed precision (GPU only)')
    p.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override config entries, e.g. train_cfg.max_iters=100',
    )
    p.add_argument(
        '--skip-preflight',
        action='store_true',
        help='do not check that the weights and data the config names exist before building',
    )
    p.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'], default='none')
    p.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = p.parse_args(argv)
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    return args


def preflight(cfg, mode: str, config: str) -> None:
    """Stop with one message listing every missing weight / data path (before building)."""
    from mmrefvlm.utils.preflight import PreflightError, run_preflight

    try:
        run_preflight(cfg, mode, config_name=config)
    except PreflightError as err:
        raise SystemExit(str(err)) from None


def main(argv=None) -> None:
    args = parse_args(argv)
    from mmrefvlm.apis import build_runner, load_config
    from mmrefvlm.utils.registry_errors import registry_hints

    cfg = load_config(
        args.config, cfg_options=args.cfg_options, work_dir=args.work_dir, launcher=args.launcher
    )
    if args.amp:
        import torch

        if not torch.cuda.is_available():
            raise SystemExit('--amp needs a CUDA GPU; on CPU train in float32 (drop --amp)')
        kind = cfg.optim_wrapper.type
        guarded = 'NaNGuard' in getattr(kind, '__name__', str(kind))
        cfg.optim_wrapper.type = 'NaNGuardAmpOptimWrapper' if guarded else 'AmpOptimWrapper'
        cfg.optim_wrapper.dtype = 'bfloat16'
    if args.resume == 'auto':
        cfg.resume, cfg.load_from = True, None
    elif args.resume is not None:
        cfg.resume, cfg.load_from = True, args.resume
    if not args.skip_preflight:
        preflight(cfg, 'train', args.config)
    with registry_hints():  # an unknown `type` in the config: list close registered names
        runner = build_runner(cfg)
        runner.train()


if __name__ == '__main__':
    main()
