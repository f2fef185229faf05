# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""The prepared GPU run (``tools/misc/gpu_session.sh`` -> ``benchmarks/gpu_paper_scale.sh``) on a
machine without a GPU: a lent GPU's minutes must not go to a renamed flag or a broken stage.

Copies of the two scripts run in an empty folder laid out as the repository (the scripts delete and
copy result files under their root: a GPU run beside this test must not lose its results), with a
stand-in Python that records each command line; the test then checks the
control flow (every stage ran and logged its exit status, a failing step does not stop the others,
the budget skips the demo, the results reach ``$OUT``) and parses every recorded Python command
line with the real script's own argument parser (stopped right after parsing, nothing runs).
"""

import argparse
import os
import os.path as osp
import runpy
import shutil
import subprocess
import sys
import tarfile

import pytest

from mmrefvlm.testing.tool_helpers import REPO_ROOT

SCRIPTS = ('tools/misc/gpu_session.sh', 'benchmarks/gpu_paper_scale.sh')
SEP = '\x1f'


@pytest.fixture
def fake_python(tmp_path):
    """A stand-in ``python3`` (and ``nvidia-smi``): appends its arguments to ``calls.log``; exits
    with ``$FAIL_RC`` when its command line contains ``$FAIL_ON``; kills the session script (as
    the device's time limit would) when it contains ``$KILL_ON``; as ``gpu_check.py`` it writes a
    summary and a failure log into its ``--out`` folder."""
    bin_dir = tmp_path / 'bin'
    bin_dir.mkdir()
    log = tmp_path / 'calls.log'
    py = bin_dir / 'python3'
    py.write_text(
        '#!/usr/bin/env bash\n'
        f'(IFS=$\'{SEP}\'; echo "$*") >> "{log}"\n'
        'if [ -n "${FAIL_ON:-}" ] && [[ "$*" == *"$FAIL_ON"* ]]; then exit "${FAIL_RC:-3}"; fi\n'
        'if [ -n "${KILL_ON:-}" ] && [[ "$*" == *"$KILL_ON"* ]]; then\n'
        # the parent is `timeout`, its parent the session script (read from /proc: no procps)
        '  script=$(cut -d" " -f4 /proc/$PPID/stat)\n'
        '  tr "\\0" " " < /proc/$script/cmdline | grep -q gpu_session.sh || exit 99\n'
        '  kill -9 "$script"; exit 137\n'
        'fi\n'
        'if [[ "$1" == *gpu_check.py ]]; then\n'
        '  out=$(echo "$*" | sed -E "s/.*--out ([^ ]+).*/\\1/"); mkdir -p "$out"\n'
        '  echo "## make gpu-check: stand-in" > "$out/summary.md"\n'
        '  echo "=== tests/test_x.py::test_y (call)" > "$out/failures.txt"\n'
        'fi\n'
        'echo "stand-in python: $*"\n'
    )
    smi = bin_dir / 'nvidia-smi'
    smi.write_text('#!/usr/bin/env bash\necho "Stand-in GPU, 1000 MiB, 0.0"\n')
    for path in (py, smi):
        path.chmod(0o755)
    return bin_dir, log


def run_session(tmp_path, fake_python, **env):
    bin_dir, log = fake_python
    root = tmp_path / 'repo'
    for script in SCRIPTS:
        os.makedirs(root / osp.dirname(script), exist_ok=True)
        shutil.copy(osp.join(REPO_ROOT, script), root / script)
    if env.pop('WHEELS', None):  # carried wheels (empty stand-ins)
        os.makedirs(root / '.whl')
        (root / '.whl' / 'mmengine-0.10.7-py3-none-any.whl').write_bytes(b'')
    full = dict(
        os.environ,
        PATH=f'{bin_dir}{os.pathsep}{os.environ["PATH"]}',
        PYTHON=str(bin_dir / 'python3'),
        WORK=str(tmp_path / 'work'),
        OUT=str(tmp_path / 'out'),
        **env,
    )
    res = subprocess.run(
        ['bash', str(root / SCRIPTS[0])],
        cwd=tmp_path,
        env=full,
        capture_output=True,
        text=True,
        timeout=120,
    )
    calls = [line.split(SEP) for line in log.read_text().splitlines()] if log.exists() else []
    summary = (tmp_path / 'work' / 'summary.txt').read_text()
    return res, calls, summary


def script_calls(calls):
    """The recorded calls that run a repository script: (script path, its arguments)."""
    return [(c[0], c[1:]) for c in calls if c and c[0].endswith('.py')]


class _Parsed(Exception):
    def __init__(self, namespace):
        super().__init__('parsed')
        self.namespace = namespace


def parse_with_script(script, args, monkeypatch):
    """Run ``script`` as ``__main__`` with ``args`` up to its first ``parse_args``; return the
    namespace (argparse exits with status 2 on an unknown or malformed flag)."""
    original = argparse.ArgumentParser.parse_args

    def parse_then_stop(self, args=None, namespace=None):
        raise _Parsed(original(self, args, namespace))

    monkeypatch.setattr(argparse.ArgumentParser, 'parse_args', parse_then_stop)
    monkeypatch.setattr(sys, 'argv', [script, *args])
    monkeypatch.chdir(REPO_ROOT)
    with pytest.raises(_Parsed) as parsed:
        runpy.run_path(osp.join(REPO_ROOT, script), run_name='__main__')
    return parsed.value.namespace


def test_every_stage_runs_logs_and_delivers(tmp_path, fake_python):
    res, calls, summary = run_session(tmp_path, fake_python)
    assert res.returncode == 0, res.stdout + res.stderr
    for line in (
        'gpu-check rc=0',
        'demo data rc=0',
        'paper-scale benchmarks rc=0',
        'demo step on cuda rc=0',
        'syncs per loss call on cuda rc=0',
        'GPU demo rc=0',
    ):
        assert line in summary, summary
    assert summary.rstrip().endswith('] done')  # no step failed
    assert 'Stand-in GPU' in summary  # the GPU's name is recorded
    scripts = [s for s, _ in script_calls(calls)]
    assert scripts.count('benchmarks/bench_train_step.py') == 4  # LoRA x 2, full, demo step
    for script in (
        'tools/misc/gpu_check.py',
        'tools/misc/make_demo_data.py',
        'benchmarks/bench_inference.py',
        'benchmarks/bench_matching.py',
        'benchmarks/count_syncs.py',
        'tools/run_demo.py',
    ):
        assert script in scripts, scripts
    # the paper-scale step's own summary (one line per step) and the session's results reach $OUT
    paper = (tmp_path / 'work' / 'paper_scale' / 'summary.txt').read_text()
    for step in (
        'train_lora: rc=0',
        'train_lora_nockpt: rc=0',
        'train_full: rc=0',
        'inference: rc=0',
        'matching: rc=0',
    ):
        assert step in paper
    out = tmp_path / 'out'
    assert (out / 'summary.txt').read_text() == summary
    with tarfile.open(out / 'gpu_session.tgz') as tar:
        names = tar.getnames()
    assert 'work/summary.txt' in names and 'work/paper_scale/train_lora.log' in names
    # the GPU demo's training gets what is left of the budget, minus the test phase
    (demo_args,) = [a for s, a in script_calls(calls) if s == 'tools/run_demo.py']
    budget = float(demo_args[demo_args.index('--time-budget') + 1])
    assert 570 - 150 - 30 <= budget <= 570 - 150


def test_a_failing_step_does_not_stop_the_others(tmp_path, fake_python):
    res, calls, summary = run_session(tmp_path, fake_python, FAIL_ON='stage2_lora.py', FAIL_RC='7')
    paper = (tmp_path / 'work' / 'paper_scale' / 'summary.txt').read_text()
    assert 'train_lora: rc=7' in paper and 'train_full: rc=0' in paper
    assert 'matching: rc=0' in paper and 'GPU demo rc=0' in summary
    # the failure reaches the session's summary and exit status
    assert 'paper-scale benchmarks rc=1' in summary
    assert 'done; failed: paper-scale benchmarks' in summary and res.returncode == 1


def test_too_small_a_budget_skips_the_gpu_demo_and_stages_pick_steps(tmp_path, fake_python):
    res, calls, summary = run_session(tmp_path, fake_python, BUDGET='200', STAGES='step demo')
    assert 'GPU demo skipped' in summary
    scripts = [s for s, _ in script_calls(calls)]
    assert 'tools/run_demo.py' not in scripts
    assert 'tools/misc/gpu_check.py' not in scripts  # stage "check" not asked for
    assert 'benchmarks/bench_inference.py' not in scripts  # stage "bench" not asked for
    assert 'tools/misc/make_demo_data.py' not in scripts  # no data for a demo that cannot run
    assert 'benchmarks/count_syncs.py' in scripts
    # with less than the step's 150 s left, the step is skipped too (and says so)
    (tmp_path / 'calls.log').unlink()
    res, calls, summary = run_session(tmp_path, fake_python, BUDGET='100', STAGES='step demo')
    assert 'demo step skipped' in summary and not script_calls(calls)


def test_every_recorded_command_line_parses_with_its_script(tmp_path, fake_python, monkeypatch):
    _, calls, _ = run_session(tmp_path, fake_python)
    seen = {}
    for script, args in script_calls(calls):
        ns = parse_with_script(script, args, monkeypatch)
        seen.setdefault(script, []).append(ns)
        if hasattr(ns, 'device'):
            assert ns.device == 'cuda', (script, args)
    lora, lora_nockpt, full, demo_step = seen['benchmarks/bench_train_step.py']
    assert lora.config == 'configs/refvlm/stage2_lora.py' and lora.random_init
    assert lora_nockpt.config == lora.config and lora_nockpt.gradient_checkpointing == 'off'
    assert lora_nockpt.name != (lora.name or '')  # its own results file
    assert full.config == 'configs/refvlm/stage2.py' and full.gradient_checkpointing == 'on'
    assert not hasattr(demo_step, 'random_init')  # the demo breakdown's own parser
    for ns in (lora, lora_nockpt, full):  # the configs the benchmarks build exist
        assert osp.isfile(osp.join(REPO_ROOT, ns.config))
    (demo,) = seen['tools/run_demo.py']
    assert demo.config == 'configs/refvlm/demo_gpu.py' and demo.time_budget > 0
    (data,) = seen['tools/misc/make_demo_data.py']
    (inference,) = seen['benchmarks/bench_inference.py']
    assert inference.random_init and inference.batch_sizes == [1, 8, 32]
    # the demo data the session generates is the data the GPU demo's config reads
    from mmengine.config import Config

    cfg = Config.fromfile(osp.join(REPO_ROOT, demo.config))
    assert data.out == cfg.data_root
    assert data.num_train == cfg.demo_dataset['num_train_images']
    assert data.num_val == cfg.demo_dataset['num_val_images']
    assert data.seed == cfg.demo_dataset.get('seed', 0)
    assert set(data.tasks) == set(cfg.demo_dataset.get('tasks', data.tasks))


def test_wheels_go_to_a_private_folder_when_site_packages_is_not_writable(tmp_path):
    """No mmengine on the machine: the carried wheels are installed; where the plain install does
    not make them importable (not root), they go to /tmp/site, ahead of the machine's packages."""
    bin_dir = tmp_path / 'bin'
    bin_dir.mkdir()
    log = tmp_path / 'calls.log'
    flag = tmp_path / 'installed'
    (bin_dir / 'python3').write_text(
        '#!/usr/bin/env bash\n'
        f'(IFS=$\'{SEP}\'; echo "$*") >> "{log}"\n'
        f'echo "PYTHONPATH=$PYTHONPATH" >> "{log}.env"\n'
        'if [[ "$*" == *"import mmengine"* ]]; then\n'
        f'  [ -f "{flag}" ] && exit 0; echo "ModuleNotFoundError: mmengine" >&2; exit 1\n'
        'fi\n'
        'if [[ "$*" == *"pip install"* ]]; then\n'
        f'  [[ "$*" == *"--target /tmp/site"* ]] && touch "{flag}" && exit 0\n'
        '  exit 0\n'  # a user-site install that is not on the path: succeeds, imports nothing
        'fi\n'
    )
    (bin_dir / 'python3').chmod(0o755)
    (bin_dir / 'nvidia-smi').write_text('#!/usr/bin/env bash\n')
    (bin_dir / 'nvidia-smi').chmod(0o755)
    res, calls, summary = run_session(tmp_path, (bin_dir, log), STAGES='step', WHEELS='1')
    pips = [c for c in calls if c[:3] == ['-m', 'pip', 'install']]
    assert len(pips) == 2 and '--target' not in pips[0] and '/tmp/site' in pips[1], pips
    assert summary.count('install rc=0') == 1 and 'not importable' not in summary
    later = (tmp_path / 'calls.log.env').read_text().splitlines()[-1]
    assert later.endswith(':/tmp/site') and str(tmp_path / 'repo') in later


def test_a_run_cut_by_the_time_limit_keeps_what_it_measured(tmp_path, fake_python):
    """The device kills a command at its limit and returns what is in $OUT by then."""
    res, calls, summary = run_session(tmp_path, fake_python, KILL_ON='run_demo.py')
    assert res.returncode == -9  # the session script itself was killed, in the GPU demo
    out = tmp_path / 'out'
    delivered = (out / 'summary.txt').read_text()
    for line in ('gpu-check rc=0', 'paper-scale benchmarks rc=0', 'demo step on cuda rc=0',
                 'demo data rc=0'):  # fmt: skip
        assert line in delivered, delivered
    assert (out / 'gpu_check_summary.md').read_text().startswith('## make gpu-check')
    assert 'test_x.py::test_y' in (out / 'gpu_check_failures.txt').read_text()
    assert not (out / 'gpu_session.tgz').exists()  # the end never came
