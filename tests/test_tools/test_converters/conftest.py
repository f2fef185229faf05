# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""Run a converter of tools/dataset_converters in-process on its fixture and load its output."""

import importlib.util
import json
import os.path as osp
from collections import Counter

import pytest

from mmrefvlm.datasets.records import TASKS, load_template_sets, validate_file

REPO = osp.dirname(osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))
FIXTURES = osp.join(REPO, 'tests', 'data', 'converters')
CONVERTERS = osp.join(REPO, 'tools', 'dataset_converters')
SLOTS = {'rec': ['expr'], 'res': ['expr'], 'gres': ['expr'], 'vqa': ['question']}


@pytest.fixture(scope='session')
def template_dir(tmp_path_factory):
    """Tiny template sets for every task, independent of the packaged ones."""
    folder = tmp_path_factory.mktemp('templates')
    for task in TASKS:
        slots = SLOTS.get(task, [])
        text = ' '.join(f'<{s}>' for s in slots) or 'Do it.'
        if task.startswith('ig_') or task == 'reg':
            text = 'Look at [VPT]. ' + text
        with open(folder / f'{task}.json', 'w') as f:
            json.dump(
                {
                    'task': task,
                    'slots': slots,
                    'system': f'{task} system',
                    'templates': [text, '<image>\n' + text],
                },
                f,
            )
    return str(folder)


def load_converter(name: str):
    spec = importlib.util.spec_from_file_location(
        f'_converter_{name}', osp.join(CONVERTERS, f'{name}.py')
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def run_converter(tmp_path, template_dir):
    """``run_converter(name, *argv)`` -> (records by id, skipped Counter, output path).

    The output must pass the validator (with the tiny template sets and with ``known_units``)."""

    def run(name: str, *argv: str) -> tuple[dict, Counter, str]:
        out = str(tmp_path / f'{name}.jsonl')
        skipped = load_converter(name).main([*argv, '--out', out, '--template-dir', template_dir])
        report = validate_file(
            out,
            template_sets=load_template_sets(template_dir),
            known_units=['box', 'mask', 'keypoint', 'depth'],
        )
        assert report.num_errors == 0, [str(e) for e in report.errors]
        with open(out, encoding='utf-8') as f:
            records = [json.loads(line) for line in f]
        assert len({r['id'] for r in records}) == len(records)
        return {r['id']: r for r in records}, skipped, out

    return run


@pytest.fixture(scope='session')
def fixtures():
    """The fixture folder tests/data/converters."""
    return FIXTURES


@pytest.fixture(scope='session')
def converter():
    """``converter(name)`` imports tools/dataset_converters/<name>.py."""
    return load_converter
