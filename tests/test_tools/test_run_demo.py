# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""``tools/run_demo.py``: ``--max-iters`` stretches the lr schedule; the GPU demo config's data."""

import os.path as osp

import pytest
from mmengine.config import Config

from mmrefvlm.testing.tool_helpers import REPO_ROOT, load_tool

CFG = osp.join(REPO_ROOT, 'configs', 'refvlm')


def test_max_iters_rescales_the_schedule():
    tool = load_tool('run_demo')
    cfg = Config.fromfile(osp.join(CFG, 'demo_stage2.py'))  # 4200 iterations, warm-up 100
    opts = dict(o.split('=', 1) for o in tool.schedule_overrides(cfg, 420))
    assert opts == {
        'train_cfg.max_iters': '420',
        'train_cfg.val_interval': '420',
        'param_scheduler.0.begin': '0',
        'param_scheduler.0.end': '10',
        'param_scheduler.1.begin': '10',
        'param_scheduler.1.end': '420',
        'param_scheduler.1.T_max': '410',
    }
    cfg.merge_from_dict({k: int(v) for k, v in opts.items()})
    assert cfg.param_scheduler[1].end == cfg.train_cfg.max_iters == 420


def test_gpu_demo_config_reads_its_own_larger_dataset():
    cfg = Config.fromfile(osp.join(CFG, 'demo_gpu.py'))
    cpu = Config.fromfile(osp.join(CFG, 'demo_stage2.py'))
    roots = {
        d.data_root
        for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader')
        for d in cfg[loader].dataset.datasets
    }
    assert roots == {cfg.data_root} == {'data/demo_gpu'}
    assert cfg.demo_dataset['num_train_images'] > 5 * 1500  # the CPU demo's default
    assert cfg.demo_dataset['num_val_images'] == 200  # the same val split as the CPU demo
    assert cfg.train_dataloader.batch_size > cpu.train_dataloader.batch_size
    assert cfg.param_scheduler[1].end == cfg.train_cfg.max_iters
    assert cfg.model == cpu.model  # the same model: the two demos' metrics compare directly


def test_time_budget_reaches_the_configs_hook():
    tool = load_tool('run_demo')
    cfg = Config.fromfile(osp.join(CFG, 'demo_gpu.py'))
    opts = tool.time_budget_overrides(cfg, 300.0)
    cfg.merge_from_dict(dict(o.split('=', 1) for o in opts))
    hooks = [h for h in cfg.custom_hooks if 'TimeBudgetHook' in str(h['type'])]
    assert len(hooks) == 1 and float(hooks[0]['max_seconds']) == 300.0
    with pytest.raises(ValueError, match='TimeBudgetHook'):
        tool.time_budget_overrides(Config.fromfile(osp.join(CFG, 'demo_stage2.py')), 300.0)


def test_max_iters_moves_a_final_only_checkpoint_to_the_new_end():
    tool = load_tool('run_demo')
    lisa = osp.join(REPO_ROOT, 'projects', 'lisa', 'configs', 'lisa_tiny_demo.py')
    cfg = Config.fromfile(lisa)  # checkpoints once, at max_iters (300)
    assert cfg.default_hooks.checkpoint.interval == cfg.train_cfg.max_iters
    opts = dict(o.split('=', 1) for o in tool.schedule_overrides(cfg, 1200))
    assert opts['default_hooks.checkpoint.interval'] == '1200'
    # a config that checkpoints periodically keeps its interval
    stage2 = Config.fromfile(osp.join(CFG, 'demo_stage2.py'))
    assert 'default_hooks.checkpoint.interval' not in dict(
        o.split('=', 1) for o in tool.schedule_overrides(stage2, 420)
    )


def test_cfg_options_must_be_key_value_pairs():
    tool = load_tool('run_demo')
    assert tool.parse_args(['--cfg-options', 'randomness.seed=1']).cfg_options == [
        'randomness.seed=1'
    ]
    with pytest.raises(SystemExit, match='KEY=VALUE'):
        tool.parse_args(['--cfg-options', 'seed'])


def test_report_gives_wall_and_process_cpu_times():
    tool = load_tool('run_demo')
    text = tool.report(
        {'res/cIoU': 42.0},
        {'res/cIoU': 5.8},
        {'train': 390.0, 'test': 12.0, 'cpu': {'train': 360.0, 'test': 6.0}},
        aims={},
    )
    assert '| `res/cIoU` | 42.000 | 5.800 |  |' in text
    assert text.endswith(
        'Training 6.5 min, test 0.2 min (this machine, wall; process CPU 6.0 min and 0.1 min).'
    )
    plain = tool.report({'res/cIoU': 42.0}, {}, {'train': 60.0, 'test': 6.0}, aims={})
    assert plain.endswith('Training 1.0 min, test 0.1 min (this machine, wall).')


def test_the_baseline_reads_overrides_typed_as_train_and_test_do():
    tool = load_tool('run_demo')
    opts = ['test_dataloader.dataset.datasets.0.indices=40', 'model.point_threshold=0.5']
    opts += ['data_root=/tmp/demo', 'val_cfg=None']
    assert tool.cfg_dict(opts) == {
        'test_dataloader.dataset.datasets.0.indices': 40,  # an int, not '40'
        'model.point_threshold': 0.5,
        'data_root': '/tmp/demo',
        'val_cfg': None,
    }
    assert tool.cfg_dict([]) == {}
