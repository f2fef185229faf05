# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""``make gpu-check``: the whole test suite on a CUDA machine, GPU tests included, and a summary.

    python tools/misc/gpu_check.py [--workers 12] [--out work_dirs/gpu_check] [--timeout 330]

Runs, in one ``pytest -n WORKERS`` (pytest-xdist) over ``tests`` and ``projects``, every test that
is not ``slow``: the CPU suite and the ``@pytest.mark.gpu`` tests (AMP, resume, CPU/GPU parity,
LoRA + checkpointing, QLoRA, FSDP, DeepSpeed, the SAM plugin). The GPU tests append measurements
to a report file; this script then writes ``OUT/summary.md`` (and prints it): pass / fail / skip
counts, the failing tests, the AMP step time and peak memory, the GPU, torch and the commit;
``OUT/failures.txt`` gets each failure with its traceback as it happens (kept if the run is cut).
Exit status: 0 when nothing failed and the GPU tests ran, 1 otherwise. Needs CUDA.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import os.path as osp
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET

REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def junit_counts(path: str) -> dict:
    """Totals and failing test ids of a pytest JUnit XML file.

    Returns:
        dict: ``tests``, ``passed``, ``failed`` (failures + errors), ``skipped``, ``failures``
        (list of ``file::name`` ids) and ``gpu_ran`` (number of passed tests whose id names a
        GPU test module, ``test_gpu`` / ``_cuda``).
    """
    root = ET.parse(path).getroot()
    out = dict(tests=0, passed=0, failed=0, skipped=0, failures=[], gpu_ran=0)
    for case in root.iter('testcase'):
        out['tests'] += 1
        test_id = f'{case.get("classname", "")}::{case.get("name", "")}'
        kinds = {child.tag for child in case}
        if kinds & {'failure', 'error'}:
            out['failed'] += 1
            out['failures'].append(test_id)
        elif 'skipped' in kinds:
            out['skipped'] += 1
        else:
            out['passed'] += 1
            if 'test_gpu' in test_id or '_cuda' in test_id:
                out['gpu_ran'] += 1
    return out


def read_report(path: str) -> dict[str, dict]:
    """The GPU tests' measurements (``gpu_report`` JSON lines), keyed by name."""
    rows: dict[str, dict] = {}
    if osp.isfile(path):
        with open(path, encoding='utf-8') as f:
            for line in f:
                if line.strip():
                    row = json.loads(line)
                    rows[row.pop('name')] = row
    return rows


def summary_markdown(counts: dict, report: dict, info: dict, seconds: float) -> str:
    """The summary table of one ``make gpu-check`` run."""
    amp = report.get('amp_bf16_train', {})
    resume = report.get('resume_cuda', {})
    lines = [
        f'## make gpu-check: {info["date"]}, {info["gpu"]}, torch {info["torch"]}, '
        f'commit {info["commit"]}',
        '',
        '| | |',
        '|---|---|',
        f'| tests | {counts["tests"]} ({counts["passed"]} passed, {counts["failed"]} failed, '
        f'{counts["skipped"]} skipped) |',
        f'| GPU tests passed | {counts["gpu_ran"]} |',
        f'| wall time | {seconds:.0f} s |',
    ]
    if amp:
        lines.append(
            f'| AMP (bf16) step, tiny config, batch {amp.get("batch_size")} | '
            f'{1e3 * amp["step_time_s"]:.1f} ms median |'
        )
        lines.append(f'| peak CUDA memory of that run | {amp["peak_memory_mb"]:.0f} MB |')
    if 'relative_weight_difference' in resume:
        lines.append(
            '| resume on CUDA: ‖w_resumed − w_full‖ / ‖update‖ | '
            f'{resume["relative_weight_difference"]:.2e} |'
        )
    for name, row in sorted(report.items()):
        if name not in ('amp_bf16_train', 'resume_cuda'):
            values = ', '.join(f'{k}={v}' for k, v in row.items() if not isinstance(v, dict))
            lines.append(f'| {name} | {values} |')
    if counts['failures']:
        lines += ['', 'Failed:', *[f'- `{t}`' for t in counts['failures']]]
    return '\n'.join(lines) + '\n'


def environment() -> dict:
    """GPU name, torch version, commit and UTC date of this run."""
    import torch

    commit = subprocess.run(
        ['git', 'rev-parse', '--short', 'HEAD'], cwd=REPO_ROOT, capture_output=True, text=True
    ).stdout.strip()
    return dict(
        gpu=torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no CUDA',
        torch=torch.__version__,
        commit=commit or 'unknown',
        date=datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M UTC'),
    )


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--workers', default='12', help='pytest-xdist workers (-n)')
    p.add_argument('--out', default=osp.join(REPO_ROOT, 'work_dirs', 'gpu_check'))
    p.add_argument('--timeout', type=float, default=330, help='seconds for the whole pytest run')
    p.add_argument('pytest_args', nargs='*', help='extra pytest arguments (after --)')
    args = p.parse_args(argv)
    import torch

    if not torch.cuda.is_available():
        print('gpu-check needs a CUDA GPU (torch.cuda.is_available() is False)', file=sys.stderr)
        return 1
    os.makedirs(args.out, exist_ok=True)
    # the tests share data/demo: generate it once here, not in several xdist workers at a time
    sys.path.insert(0, REPO_ROOT)
    from mmrefvlm.datasets import ensure_demo_dataset
    from mmrefvlm.datasets.demo import ALL_DEMO_TASKS

    # with the opt-in reference tasks (projects/anyref's tests), so no worker regenerates it
    ensure_demo_dataset(
        osp.join(REPO_ROOT, 'data', 'demo'),
        tasks=list(ALL_DEMO_TASKS),
        workers=min(8, os.cpu_count() or 1),
    )
    junit, report = osp.join(args.out, 'junit.xml'), osp.join(args.out, 'report.jsonl')
    failures = osp.join(args.out, 'failures.txt')  # written as failures happen
    for path in (report, failures):
        if osp.exists(path):
            os.remove(path)
    env = dict(
        os.environ, MMREFVLM_GPU_REPORT=report, MMREFVLM_FAILURE_LOG=failures, HF_HUB_OFFLINE='1'
    )
    env.setdefault('TRANSFORMERS_OFFLINE', '1')
    cmd = [sys.executable, '-m', 'pytest', '-q', '-n', args.workers, '-m', 'not slow',
           f'--junitxml={junit}', 'tests', 'projects', *args.pytest_args]  # fmt: skip
    start = time.time()
    with open(osp.join(args.out, 'pytest.log'), 'w') as log:
        # own process group: on timeout the xdist workers (and their tool subprocesses) go too
        proc = subprocess.Popen(
            cmd, cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        try:
            rc = proc.wait(timeout=args.timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            rc = 124
    seconds = time.time() - start
    if not osp.isfile(junit):
        print(f'pytest wrote no report (exit {rc}); see {args.out}/pytest.log', file=sys.stderr)
        return 1
    counts = junit_counts(junit)
    text = summary_markdown(counts, read_report(report), environment(), seconds)
    if rc == 124:
        text += f'\nThe pytest run hit the {args.timeout:.0f} s limit.\n'
    with open(osp.join(args.out, 'summary.md'), 'w', encoding='utf-8') as f:
        f.write(text)
    print(text)
    return 0 if rc == 0 and counts['failed'] == 0 and counts['gpu_ran'] > 0 else 1


if __name__ == '__main__':
    sys.exit(main())
