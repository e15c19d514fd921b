"""The import layering of docs/ARCHITECTURE.md: dnnlib -> torch_utils -> ops -> training | metrics -> scripts.

Checked statically (AST) over every module of the packages, so a violating import fails even when it
sits inside a function. Construction by dotted name (dnnlib.util.construct_class_by_name) is how
configuration names classes of its own layer or below; it is no way around the layering: a
string naming a module of a forbidden package counts as an import of it. training reaches metrics
only through the `metric_hook` argument that train.py (the scripts layer) passes to the loop.
"""

import ast
import os
import re

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LAYERS = {'dnnlib': 0, 'torch_utils': 1, 'ops': 2, 'training': 3, 'metrics': 3}
FORBIDDEN_SIBLINGS = {('metrics', 'training'), ('training', 'metrics')}
DOTTED = re.compile(r'(%s)(\.[A-Za-z_]\w*)+' % '|'.join(LAYERS))


def imported_top_names(path):
    """(lineno, top-level package) for every absolute import in a file; relative imports resolve to the file's own package."""
    with open(path, encoding='utf-8') as f:
        tree = ast.parse(f.read(), filename=path)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name.split('.')[0]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.lineno, node.module.split('.')[0]
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and DOTTED.fullmatch(node.value):
            yield node.lineno, node.value.split('.')[0]  # a dotted name for construct_class_by_name / call_func_by_name


def violations(root):
    found = []
    for pkg, layer in LAYERS.items():
        pkg_dir = os.path.join(root, pkg)
        for dirpath, _dirs, files in os.walk(pkg_dir):
            for name in files:
                if not name.endswith('.py'):
                    continue
                path = os.path.join(dirpath, name)
                rel = os.path.relpath(path, root)
                for lineno, top in imported_top_names(path):
                    if pkg == 'dnnlib' and top == 'torch':
                        found.append(f'{rel}:{lineno}: dnnlib must not import torch')
                    if top in LAYERS and top != pkg and (LAYERS[top] > layer or (pkg, top) in FORBIDDEN_SIBLINGS):
                        found.append(f'{rel}:{lineno}: {pkg} (layer {layer}) imports {top} (layer {LAYERS[top]})')
    return found


def test_packages_exist():
    for pkg in LAYERS:
        assert os.path.isfile(os.path.join(ROOT, pkg, '__init__.py')), f'missing package {pkg}/__init__.py'


def test_no_upward_imports():
    found = violations(ROOT)
    assert not found, 'Upward imports:\n' + '\n'.join(found)


@pytest.mark.parametrize('pkg,stmt,expect', [
    ('ops', 'import training.loss', 'ops (layer 2) imports training'),
    ('metrics', 'from training import dataset', 'metrics (layer 3) imports training'),
    ('dnnlib', 'import torch', 'dnnlib must not import torch'),
    ('torch_utils', 'def f():\n    from ops import bias_act', 'torch_utils (layer 1) imports ops'),
    ('training', "f = 'metrics.metric_main.run_metrics_on_snapshot'", 'training (layer 3) imports metrics'),
])
def test_checker_catches_violations(tmp_path, pkg, stmt, expect):
    # The checker itself must fail on a bad tree, or the test above proves nothing.
    for p in LAYERS:
        (tmp_path / p).mkdir()
        (tmp_path / p / '__init__.py').write_text('')
    (tmp_path / pkg / 'bad.py').write_text(stmt + '\n')
    found = violations(str(tmp_path))
    assert any(expect in v for v in found), found


def test_checker_accepts_downward_imports(tmp_path):
    for p in LAYERS:
        (tmp_path / p).mkdir()
        (tmp_path / p / '__init__.py').write_text('')
    (tmp_path / 'training' / 'ok.py').write_text('import dnnlib\nfrom torch_utils import misc\nfrom ops import bias_act\nfrom . import x\n')
    (tmp_path / 'metrics' / 'ok.py').write_text('from ops import upfirdn2d\nimport numpy\n')
    assert violations(str(tmp_path)) == []
