# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""Install mmrefvlm: ``pip install -e .`` (requirements are pinned in ``requirements/``)."""

import os.path as osp

from setuptools import find_packages, setup

HERE = osp.dirname(osp.abspath(__file__))


def read_requirements(name: str) -> list[str]:
    """Read one ``requirements/<name>.txt`` file, dropping comments and blank lines."""
    reqs = []
    with open(osp.join(HERE, 'requirements', f'{name}.txt'), encoding='utf-8') as f:
        for line in f:
            line = line.split('#', 1)[0].strip()
            if line:
                reqs.append(line)
    return reqs


def read_version() -> str:
    """Read ``__version__`` from ``mmrefvlm/version.py`` without importing the package."""
    scope: dict = {}
    with open(osp.join(HERE, 'mmrefvlm', 'version.py'), encoding='utf-8') as f:
        exec(f.read(), scope)
    return scope['__version__']


setup(
    name='mmrefvlm',
    version=read_version(),
    description=(
        'OpenMMLab-style framework for multimodal LLMs that answer in text and visual units'
    ),
    long_description=open(osp.join(HERE, 'README.md'), encoding='utf-8').read(),
    long_description_content_type='text/markdown',
    license='Apache-2.0',
    python_requires='>=3.10',
    packages=find_packages(include=['mmrefvlm', 'mmrefvlm.*']),
    include_package_data=True,
    package_data={'mmrefvlm': ['**/*.json', '**/*.txt', '**/*.md']},
    install_requires=read_requirements('runtime'),
    extras_require={
        'tests': read_requirements('tests'),
        'optional': read_requirements('optional'),
        'assets': read_requirements('assets'),
    },
    zip_safe=False,
)
