# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""The core never imports ``projects/``: plugins depend on the core, never the reverse."""

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CORE = REPO / 'mmrefvlm'


def _imported_modules(tree: ast.AST) -> list[tuple[int, str]]:
    """(line, module) of every import statement and of string literals passed to
    ``importlib.import_module`` / ``__import__`` / ``import_modules_from_strings``."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
        elif isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, 'id', '')
            if name in ('import_module', '__import__', 'import_modules_from_strings'):
                for arg in node.args:
                    if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                        found.append((node.lineno, arg.value))
    return found


def test_no_core_module_imports_projects():
    offenders = []
    files = sorted(CORE.rglob('*.py'))
    assert len(files) > 20, 'the core package was not found'
    for path in files:
        tree = ast.parse(path.read_text(encoding='utf-8'), filename=str(path))
        for line, module in _imported_modules(tree):
            if module == 'projects' or module.startswith('projects.'):
                offenders.append(f'{path.relative_to(REPO)}:{line} imports {module}')
    assert not offenders, '\n'.join(offenders)


def test_detector_catches_an_import_of_projects(tmp_path):
    src = (
        'import os\nfrom projects.example_unit import point_unit\n'
        'importlib.import_module("projects.sam_plugin")\n'
    )
    modules = [m for _, m in _imported_modules(ast.parse(src))]
    assert modules == ['os', 'projects.example_unit', 'projects.sam_plugin']


def test_registry_locations_stay_in_the_core():
    """Registries import their ``locations`` lazily; none may point into ``projects``."""
    from mmengine.registry import Registry

    import mmrefvlm.registry as registry

    regs = [v for v in vars(registry).values() if isinstance(v, Registry)]
    assert len(regs) > 10
    for reg in regs:
        for location in reg._locations:
            assert location.startswith('mmrefvlm'), (reg.name, location)
