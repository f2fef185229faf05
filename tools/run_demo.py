# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""The embedded demo (``make demo``): generate data, train, test, compare with trivial baselines.

    python tools/run_demo.py [--work-dir work_dirs/demo] [--max-iters N]

Writes ``<work_dir>/metrics.json`` (model), ``baseline_metrics.json``, ``report.md`` (the
side-by-side table) and PNG overlays under ``<work_dir>/overlays``.
"""

from __future__ import annotations

import argparse
import json
import os.path as osp
import sys
import time

REPO_ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, REPO_ROOT)
sys.path.insert(0, osp.join(REPO_ROOT, 'tools'))

CONFIG = osp.join(REPO_ROOT, 'configs', 'refvlm', 'demo_stage2.py')


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--config', default=CONFIG)
    p.add_argument(
        '--work-dir',
        help='default work_dirs/demo for the default config, work_dirs/<config name> otherwise',
    )
    p.add_argument(
        '--data-root',
        help="the demo dataset's folder (generated when missing); default: the config's "
        '`data_root`, under the repository',
    )
    p.add_argument(
        '--max-iters',
        type=int,
        help="override the config's training length (the lr schedule is rescaled to it)",
    )
    p.add_argument(
        '--time-budget',
        type=float,
        help="training wall-clock budget in seconds: the config's TimeBudgetHook measures the "
        'step time and compresses the schedule to fit (GPU demo)',
    )
    p.add_argument('--skip-train', action='store_true', help='test the existing last checkpoint')
    p.add_argument(
        '--cfg-options',
        nargs='+',
        default=[],
        metavar='KEY=VALUE',
        help='config overrides for training, test and the baseline alike, e.g. '
        'randomness.seed=1 (applied after --max-iters / --time-budget)',
    )
    args = p.parse_args(argv)
    for opt in args.cfg_options:
        if '=' not in opt:
            raise SystemExit(f'--cfg-options takes KEY=VALUE pairs, got {opt!r}')
    return args


def cfg_dict(opts: list[str]) -> dict:
    """``KEY=VALUE`` overrides parsed as ``tools/train.py`` / ``tools/test.py`` parse their
    ``--cfg-options`` (mmengine's ``DictAction``: numbers, booleans and lists typed), so the
    baseline is built with the same values as the model's test."""
    from mmengine.config import DictAction

    p = argparse.ArgumentParser()
    p.add_argument('--cfg-options', nargs='+', action=DictAction, default={})
    return p.parse_args(['--cfg-options', *opts] if opts else []).cfg_options


def baseline_metrics(cfg_path: str, overrides: dict) -> dict:
    """The config's val metrics on trivial predictions (whole image / constant depth)."""
    from mmengine.evaluator import Evaluator
    from mmengine.registry import init_default_scope

    from mmrefvlm.apis import load_config
    from mmrefvlm.evaluation.baselines import trivial_prediction
    from mmrefvlm.registry import DATASETS

    init_default_scope('mmrefvlm')
    cfg = load_config(cfg_path, cfg_options=overrides)
    dataset = DATASETS.build(cfg.test_dataloader.dataset)
    evaluator = Evaluator(cfg.test_evaluator)
    for i in range(len(dataset)):
        sample = dataset[i]['data_samples']
        evaluator.process([trivial_prediction(sample)])
    return evaluator.evaluate(len(dataset))


#: The aims for the CPU demo's val split (percent); a config may set its own ``demo_aims``.
AIMS = {'rec/Acc@0.5': 60.0, 'res/cIoU': 50.0, 'trp/parse_success': 95.0, 'gres/N-acc': 80.0}


def schedule_overrides(cfg, max_iters: int) -> list[str]:
    """``--cfg-options`` that set ``max_iters`` and stretch every iteration-based scheduler's
    ``begin`` / ``end`` / ``T_max`` by the same factor, so warm-up and decay keep their shape."""
    old = int(cfg.train_cfg.max_iters)
    if max_iters <= 0:
        raise ValueError(f'--max-iters must be positive, got {max_iters}')
    opts = [f'train_cfg.max_iters={max_iters}']
    if cfg.train_cfg.get('val_interval') == old:
        opts.append(f'train_cfg.val_interval={max_iters}')
    if cfg.get('default_hooks', {}).get('checkpoint', {}).get('interval') == old:
        opts.append(f'default_hooks.checkpoint.interval={max_iters}')  # one at the end, still
    for i, sched in enumerate(cfg.get('param_scheduler') or []):
        bounds = {}
        for key in ('begin', 'end'):
            if key in sched:
                bounds[key] = max(0 if key == 'begin' else 1, round(sched[key] * max_iters / old))
                opts.append(f'param_scheduler.{i}.{key}={bounds[key]}')
        if 'T_max' in sched and len(bounds) == 2:
            opts.append(f'param_scheduler.{i}.T_max={max(1, bounds["end"] - bounds["begin"])}')
    return opts


def time_budget_overrides(cfg, seconds: float) -> list[str]:
    """``--cfg-options`` that give the config's ``TimeBudgetHook`` this budget, fitting the
    schedule to the measured step time."""
    for i, hook in enumerate(cfg.get('custom_hooks') or []):
        if 'TimeBudgetHook' in str(hook['type']):
            return [
                f'custom_hooks.{i}.max_seconds={seconds}',
                f'custom_hooks.{i}.fit_schedule=True',
            ]
    raise ValueError(f'--time-budget needs a TimeBudgetHook in custom_hooks of {cfg.filename}')


def report(model: dict, base: dict, seconds: dict, aims: dict | None = None) -> str:
    """Markdown table: every metric of the model next to the trivial baseline, and the aims."""
    lines = ['| metric | demo model | trivial baseline | aim |', '|---|---|---|---|']
    for key in sorted(model):
        aim = (AIMS if aims is None else aims).get(key)
        mark = (
            ''
            if aim is None
            else (f'>= {aim:g} met' if model[key] >= aim else f'>= {aim:g} not met')
        )
        b = base.get(key)
        skip = key.startswith(('trp/', 'caption/', 'vqa/', 'pope/'))
        bs = 'n/a' if b is None or skip else f'{b:.3f}'
        lines.append(f'| `{key}` | {model[key]:.3f} | {bs} | {mark} |')
    lines.append('')
    cpu = seconds.get('cpu')  # process CPU seconds: the fairer figure on a shared machine
    cpu_text = (
        ''
        if cpu is None
        else f'; process CPU {cpu["train"] / 60:.1f} min and {cpu["test"] / 60:.1f} min'
    )
    lines.append(
        f'Training {seconds["train"] / 60:.1f} min, test {seconds["test"] / 60:.1f} min '
        f'(this machine, wall{cpu_text}).'
    )
    return '\n'.join(lines)


def main(argv=None) -> None:
    args = parse_args(argv)
    import test as test_tool
    import train as train_tool
    from mmengine.config import Config

    from mmrefvlm.datasets import ensure_demo_dataset

    cfg = Config.fromfile(args.config)
    if args.work_dir is None:
        name = (
            'demo'
            if osp.abspath(args.config) == CONFIG
            else osp.splitext(osp.basename(args.config))[0]
        )
        args.work_dir = osp.join(REPO_ROOT, 'work_dirs', name)
    if args.data_root is None:
        args.data_root = osp.join(REPO_ROOT, cfg.get('data_root', 'data/demo'))
    # the dataset the config asks for (size, generator processes); the generator's defaults else
    ensure_demo_dataset(args.data_root, **dict(cfg.get('demo_dataset') or {}))
    # every dataset of the mixes reads from --data-root
    opts = []
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        for i in range(len(cfg[loader].dataset.datasets)):
            opts.append(f'{loader}.dataset.datasets.{i}.data_root={args.data_root}')
    if args.max_iters:
        opts += schedule_overrides(cfg, args.max_iters)
    if args.time_budget is not None:
        opts += time_budget_overrides(cfg, args.time_budget)
    opts += args.cfg_options
    seconds: dict = {'cpu': {}}
    t0, c0 = time.time(), time.process_time()
    if not args.skip_train:  # no validation during training: the test below evaluates once
        train_tool.main(
            [
                args.config,
                '--work-dir',
                args.work_dir,
                '--cfg-options',
                *opts,
                'val_cfg=None',
                'val_dataloader=None',
                'val_evaluator=None',
            ]
        )
    seconds['train'], seconds['cpu']['train'] = time.time() - t0, time.process_time() - c0
    with open(osp.join(args.work_dir, 'last_checkpoint'), encoding='utf-8') as f:
        ckpt = f.read().strip()
    t0, c0 = time.time(), time.process_time()
    metrics = test_tool.main(
        [
            args.config,
            ckpt,
            '--work-dir',
            args.work_dir,
            '--show-dir',
            osp.join(args.work_dir, 'overlays'),
            '--max-show',
            '40',
            '--cfg-options',
            *opts,
        ]
    )
    seconds['test'], seconds['cpu']['test'] = time.time() - t0, time.process_time() - c0
    base = baseline_metrics(args.config, cfg_dict(opts))
    with open(osp.join(args.work_dir, 'baseline_metrics.json'), 'w', encoding='utf-8') as f:
        json.dump(base, f, indent=2, sort_keys=True)
    text = report(metrics, base, seconds, cfg.get('demo_aims'))
    with open(osp.join(args.work_dir, 'report.md'), 'w', encoding='utf-8') as f:
        f.write(text + '\n')
    print(text)  # noqa: T201 (CLI output)


if __name__ == '__main__':
    main()
