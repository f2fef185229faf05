# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""Evaluate a checkpoint: ``python tools/test.py CONFIG CHECKPOINT [--work-dir DIR] [--show-dir
DIR]``.

Writes the final metrics to ``<work_dir>/metrics.json`` (keys ``<task>/<metric>``).
"""

from __future__ import annotations

import argparse
import json
import os
import os.path as osp
import sys

REPO_ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)


def parse_args(argv=None) -> argparse.Namespace:
    from mmengine.config import DictAction

    p = argparse.ArgumentParser(description='Test (evaluate) an mmrefvlm model')
    p.add_argument('config', help='config file path')
    p.add_argument(
        'checkpoint',
        help='checkpoint file (.pth or .safetensors; loaded weights-only '
        'and strictly: every weight of the model must be in it with its shape)',
    )
    p.add_argument('--work-dir', help='where metrics.json and logs go')
    p.add_argument('--show-dir', help='write PNG overlays (prediction next to ground truth) here')
    p.add_argument('--max-show', type=int, default=50, help='at most this many overlays')
    p.add_argument('--cfg-options', nargs='+', action=DictAction, help='override config entries')
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


def main(argv=None) -> dict:
    args = parse_args(argv)
    from mmengine.dist import is_main_process

    from mmrefvlm.apis import build_runner, load_config
    from mmrefvlm.utils.registry_errors import registry_hints

    if not osp.isfile(args.checkpoint):
        raise SystemExit(f'checkpoint {args.checkpoint!r} does not exist')
    cfg = load_config(
        args.config, cfg_options=args.cfg_options, work_dir=args.work_dir, launcher=args.launcher
    )
    # loaded strictly below: a checkpoint that does not fit the config is an error, not a warning
    cfg.load_from, cfg.resume = None, False
    if args.show_dir:
        cfg.custom_hooks = list(cfg.get('custom_hooks', [])) + [
            dict(type='RefVLMVisualizationHook', out_dir=args.show_dir, max_images=args.max_show)
        ]
    if not args.skip_preflight:
        preflight(cfg, 'test', args.config)
    with registry_hints():  # an unknown `type` in the config: list close registered names
        runner = build_runner(cfg)
        runner.load_checkpoint(args.checkpoint, map_location='cpu', strict=True)
        metrics = runner.test()
    metrics = {k: (float(v) if isinstance(v, (int, float)) else v) for k, v in metrics.items()}
    if is_main_process():
        os.makedirs(cfg.work_dir, exist_ok=True)
        path = osp.join(cfg.work_dir, 'metrics.json')
        with open(path, 'w', encoding='utf-8') as f:
            json.dump(metrics, f, indent=2, sort_keys=True)
        print(f'metrics written to {path}')  # noqa: T201 (CLI output)
    return metrics


if __name__ == '__main__':
    main()
