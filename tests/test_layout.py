"""The repository's shape: modules of one idea and no import circle, a short README whose links
all resolve, and runs that leave git's view of the repository clean."""
import ast
import os
import re
import shutil
import subprocess

import pytest

from helpers import ROOT

MODULES = sorted(f[:-3] for f in os.listdir(ROOT) if f.endswith('.py'))


def project_imports(module):
    """The project modules ``module`` imports, at any depth of its code (functions included)."""
    with open(os.path.join(ROOT, module + '.py')) as f:
        tree = ast.parse(f.read())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name.split('.')[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split('.')[0])
    return found & set(MODULES) - {module}


def test_no_module_imports_the_command_line():
    importers = [m for m in MODULES if m != 'main' and 'main' in project_imports(m)]
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
    # the ones the layout was made for: choosing a device and precision needs a step, not the training loop;
    # a network does not know the checkpoint format
    assert 'step' in project_imports('precision') and 'train' not in project_imports('precision')
    assert not {'train', 'main'} & project_imports('runtime') and 'checkpoints' not in project_imports('models')


def test_only_the_command_line_reads_its_flags():
    """The parsed command line ends at main.py: no other module takes a parameter named ``args`` or
    reads an attribute of one (argtypes.py defines the flags), so each can be used and tested with
    plain values and records."""
    found = []
    for module in MODULES:
        if module in ('main', 'argtypes'):
            continue
        with open(os.path.join(ROOT, module + '.py')) as f:
            tree = ast.parse(f.read())
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                names = [a.arg for a in node.args.args + node.args.kwonlyargs + node.args.posonlyargs]
                if 'args' in names:
                    found.append('%s.py:%d takes args' % (module, node.lineno))
            elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == 'args':
                found.append('%s.py:%d reads args.%s' % (module, node.lineno, node.attr))
    assert found == []


def test_modules_stay_small():
    lengths = {m: sum(1 for _ in open(os.path.join(ROOT, m + '.py'))) for m in MODULES}
    assert lengths['main'] <= 350, lengths['main']
    assert {m: n for m, n in lengths.items() if n > 500} == {}


def markdown_files():
    docs = os.path.join(ROOT, 'docs')
    return [os.path.join(ROOT, 'README.md')] + sorted(
        os.path.join(docs, f) for f in os.listdir(docs) if f.endswith('.md'))


def test_the_readme_is_short():
    with open(os.path.join(ROOT, 'README.md')) as f:
        assert len(f.read()) <= 12000


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
    out = subprocess.run(['git', 'status', '--porcelain', '--untracked-files=all'], cwd=str(tmp_path),
                         stdout=subprocess.PIPE, universal_newlines=True, check=True).stdout
    shown = sorted(line[3:] for line in out.splitlines())
    assert shown == sorted(['.gitignore'] + kept)
