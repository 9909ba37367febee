"""The repository's shape: packages in layers (docs/design.md's table, read from there), modules of one
idea and no import circle, short modules and functions, a short README whose links all resolve, every
flag documented, and runs that leave git's view of the repository clean."""
import ast
import os
import re
import shutil
import subprocess
import sys

import pytest

from helpers import ROOT

PACKAGES = sorted(d for d in os.listdir(ROOT) if os.path.isfile(os.path.join(ROOT, d, '__init__.py')))
MODULES = sorted([f[:-3] for f in os.listdir(ROOT) if f.endswith('.py')] +
                 ['%s.%s' % (p, f[:-3]) for p in PACKAGES for f in os.listdir(os.path.join(ROOT, p))
                  if f.endswith('.py') and f != '__init__.py'])


def path_of(module):
    return os.path.join(ROOT, *module.split('.')) + '.py'


def project_imports(module):
    """The project modules ``module`` imports, at any depth of its code (functions included)."""
    with open(path_of(module)) as f:
        tree = ast.parse(f.read())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.update('%s.%s' % (node.module, alias.name) for alias in node.names)
            found.add(node.module)
    return {m for m in found if m in MODULES} - {module}


def layers():
    """{package or top-level module: its layer}, from the table in docs/design.md."""
    with open(os.path.join(ROOT, 'docs', 'design.md')) as f:
        text = f.read()
    block = re.search(r'```\nlayer[^\n]*\n(.*?)```', text, re.S).group(1)
    table = {}
    for line in block.strip().splitlines():
        number, *names = line.split()
        table.update((name, int(number)) for name in names)
    return table


def test_every_package_and_top_level_module_has_a_layer():
    top = {m.split('.')[0] for m in MODULES}
    assert sorted(top - set(layers())) == [] and sorted(set(layers()) - top) == []


def test_each_module_imports_only_from_lower_layers_or_its_own_package():
    table, wrong = layers(), []
    for module in MODULES:
        home = module.split('.')[0]
        for imported in project_imports(module):
            there = imported.split('.')[0]
            if there != home and table[there] >= table[home]:
                wrong.append('%s imports %s (layer %d, not below %d)' % (module, imported, table[there], table[home]))
    assert wrong == []


def test_no_module_imports_the_command_line():
    importers = [m for m in MODULES if m != 'main' and ('main' in project_imports(m))]
    assert importers == []


def test_the_imports_form_no_circle():
    graph = {m: project_imports(m) for m in MODULES}
    state = {}

    def visit(m, path):
        if state.get(m) == 'open':
            raise AssertionError('import circle: %s' % ' -> '.join(path[path.index(m):] + [m]))
        if state.get(m) == 'done':
            return
        state[m] = 'open'
        for n in sorted(graph[m]):
            visit(n, path + [m])
        state[m] = 'done'
    for m in MODULES:
        visit(m, [])


def test_no_package_shadows_a_folder_or_a_library():
    """No package takes the name of data/ (MNIST's files) or of a module Python or the environment has."""
    assert not os.path.exists(os.path.join(ROOT, 'data', '__init__.py'))
    installed = set(sys.stdlib_module_names) | {'data', 'datasets', 'mxnet', 'numpy', 'scipy', 'matplotlib',
                                                'imageio', 'tqdm', 'PIL', 'torch', 'gluoncv', 'insightface'}
    assert sorted(set(PACKAGES) & installed) == []


def test_only_the_command_line_reads_its_flags():
    """The parsed command line ends at main.py and cli/: no other module takes a parameter named ``args``
    or reads an attribute of one, so each can be used and tested with plain values and records; and no
    module writes an attribute of the parsed flags (what --resume finds is a value of its own)."""
    found = []
    for module in MODULES:
        with open(path_of(module)) as f:
            tree = ast.parse(f.read())
        reader = module == 'main' or module.startswith('cli.')
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)) and not reader:
                names = [a.arg for a in node.args.args + node.args.kwonlyargs + node.args.posonlyargs]
                if 'args' in names:
                    found.append('%s:%d takes args' % (module, node.lineno))
            elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == 'args':
                if isinstance(node.ctx, ast.Store) or not reader:
                    found.append('%s:%d %s args.%s' % (module, node.lineno, 'writes' if isinstance(node.ctx, ast.Store)
                                                       else 'reads', node.attr))
    assert found == []


def bench_scripts():
    return sorted(os.path.join('bench', f) for f in os.listdir(os.path.join(ROOT, 'bench')) if f.endswith('.py'))


def test_modules_and_functions_stay_small():
    files = [os.path.relpath(path_of(m), ROOT) for m in MODULES] + bench_scripts()
    long_modules, long_functions = {}, []
    for name in files:
        with open(os.path.join(ROOT, name)) as f:
            text = f.read()
        if text.count('\n') > 400:
            long_modules[name] = text.count('\n')
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno >= 60:
                long_functions.append('%s:%s (%d lines)' % (name, node.name, node.end_lineno - node.lineno + 1))
    assert long_modules == {} and long_functions == []


def markdown_files():
    docs = os.path.join(ROOT, 'docs')
    return [os.path.join(ROOT, 'README.md')] + sorted(
        os.path.join(docs, f) for f in os.listdir(docs) if f.endswith('.md'))


def test_the_readme_is_short_and_the_docs_are_read_in_an_hour():
    sizes = {os.path.relpath(p, ROOT): len(open(p).read()) for p in markdown_files()}
    assert sizes['README.md'] <= 12000
    assert sum(v for k, v in sizes.items() if k.startswith('docs')) <= 60000, sizes
    assert {k: v for k, v in sizes.items() if v > 25000} == {}


def test_every_flag_of_main_is_documented():
    """Each flag --help lists is in the README's tables or in a page of docs/."""
    import main
    flags = {s for action in main.flags.build_parser('').__dict__['_actions'] for s in action.option_strings
             if s.startswith('--') and s != '--help'}
    text = ''.join(open(p).read() for p in markdown_files())
    assert sorted(f for f in flags if not re.search(re.escape(f) + r'\b', text)) == []


@pytest.mark.parametrize('path', markdown_files(), ids=lambda p: os.path.relpath(p, ROOT))
def test_every_relative_link_and_picture_points_at_a_file(path):
    with open(path) as f:
        text = f.read()
    targets = re.findall(r'\]\(([^)\s]+)\)', text) + re.findall(r'<img [^>]*src="([^"]+)"', text)
    relative = [t for t in targets if not re.match(r'[a-z]+:', t) and not t.startswith('#')]
    missing = [t for t in relative if not os.path.exists(os.path.join(os.path.dirname(path), t.split('#')[0]))]
    assert missing == [], missing


def test_what_runs_write_is_ignored_by_git(tmp_path):
    """The default --out_dir and --ckpt_dir hold only what runs write, all ignored, so the two commands
    leave `git status` clean; the reference figures in docs/ stay tracked, their frames do not."""
    if shutil.which('git') is None:
        pytest.fail('git is needed to check .gitignore')
    shutil.copy(os.path.join(ROOT, '.gitignore'), str(tmp_path / '.gitignore'))
    subprocess.run(['git', 'init', '-q', str(tmp_path)], check=True)
    written = ['output/center-loss-train.gif', 'output/center-loss-train-epoch-01.png',
               'output/center-loss-test-epoch-02.25.png', 'output/center-loss-metrics.json',
               'output/comparison-mnist.png', 'output/center-loss-verify.json', 'ckpt/center-loss-best.params',
               'ckpt/.center-loss.lock', 'docs/figures/mnist/center-loss-train-epoch-01.png',
               'docs/figures/mnist/softmax-roc.png']
    kept = ['output/README.md', 'docs/figures/mnist/center-loss-train.gif', 'docs/figures/mnist/comparison-mnist.png',
            'docs/figures/mnist/center-loss-metrics.json', 'center_loss.py']
    for name in written + kept:
        os.makedirs(os.path.dirname(str(tmp_path / name)) or str(tmp_path), exist_ok=True)
        (tmp_path / name).write_text('')
    for env in ('.venv', '.venv-gpu'):  # a virtual environment, or a link to one elsewhere: ignored either way
        os.symlink(str(tmp_path / 'elsewhere'), str(tmp_path / env))
    out = subprocess.run(['git', 'status', '--porcelain', '--untracked-files=all'], cwd=str(tmp_path),
                         stdout=subprocess.PIPE, universal_newlines=True, check=True).stdout
    shown = sorted(line[3:] for line in out.splitlines())
    assert shown == sorted(['.gitignore'] + kept)
