"""The promise of README's "Use the loss in your own project": center_loss.py copied on its own
into another project, and the snippet shown there (and in its docstring) trains as written."""
import os
import re
import shutil
import subprocess
import sys
import textwrap

import pytest

from helpers import ROOT

# What the snippets take as given: a project's network returning (scores, features), its
# data, its softmax loss and its Trainer. Nothing of this repository is importable there.
PROJECT = '''
import importlib.util
assert importlib.util.find_spec('compat') is None and importlib.util.find_spec('models') is None
import numpy as np
if 'bool' not in vars(np):  # mxnet 1.9.1 with numpy >= 1.24, as any project using it must do
    np.bool = bool
import mxnet as mx
from mxnet import autograd, gluon, nd
from mxnet.gluon import nn


class Net(nn.HybridBlock):
    def __init__(self, num_classes, feature_size, **kwargs):
        super(Net, self).__init__(**kwargs)
        with self.name_scope():
            self.embed = nn.Dense(feature_size)
            self.classify = nn.Dense(num_classes)

    def hybrid_forward(self, F, x):
        features = self.embed(x)
        return self.classify(features), features


ctx, num_classes, feature_size, batch_size, alpha = mx.cpu(), 10, 2, 16, 0.5  # the docstring's sizes
net = Net(num_classes, feature_size)
net.initialize(ctx=ctx)
net.hybridize()
softmax_ce = gluon.loss.SoftmaxCrossEntropyLoss()
trainer = gluon.Trainer(net.collect_params(), 'sgd', {'learning_rate': 0.1})
rng = np.random.RandomState(0)
x = nd.array(rng.randn(batch_size, 8), ctx=ctx)
y = nd.array(rng.randint(0, num_classes, batch_size), ctx=ctx)
'''

CHECK = '''
centers = center_loss.centers.weight
assert centers.shape == (num_classes, feature_size), centers.shape
assert np.isfinite(loss.asnumpy()).all() and loss.shape == (batch_size,), loss
assert np.abs(centers.grad(ctx).asnumpy()).sum() > 0, 'no gradient reached the centers'
assert np.abs(net.embed.weight.grad(ctx).asnumpy()).sum() > 0, 'no gradient reached the network'
print('ok')
'''


def readme_snippet():
    text = open(os.path.join(ROOT, 'README.md')).read()
    section = text.split('## Use the loss in your own project', 1)[1]
    return re.search(r'```python\n(.*?)```', section, re.S).group(1)


def docstring_snippet():
    import center_loss
    return textwrap.dedent(center_loss.__doc__.split('Drop-in use::', 1)[1])


@pytest.mark.parametrize('where', ['readme', 'docstring'])
def test_snippet_trains_with_center_loss_py_alone(tmp_path, where):
    snippet = readme_snippet() if where == 'readme' else 'from center_loss import CenterLoss\n' + docstring_snippet()
    assert 'center_loss(features, y)' in snippet and 'center_trainer.step' in snippet, snippet
    shutil.copy(os.path.join(ROOT, 'center_loss.py'), str(tmp_path))
    script = tmp_path / 'train.py'
    # then the snippet's step (from `with autograd.record()` on) 20 times more: the loss must fall
    step = snippet[snippet.index('with autograd.record()'):]
    again = ('first = float(loss.mean().asscalar())\nfor _ in range(20):\n' + textwrap.indent(step, '    ') +
             'assert float(loss.mean().asscalar()) < first - 0.02, (first, loss)\n')
    script.write_text(PROJECT + snippet + again + CHECK)
    env = {k: v for k, v in os.environ.items() if k != 'PYTHONPATH'}
    out = subprocess.run([sys.executable, str(script)], cwd=str(tmp_path), env=env, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, universal_newlines=True, timeout=300)
    assert out.returncode == 0 and out.stdout.strip().endswith('ok'), out.stderr[-3000:]


# --------------------------------------------------------------------------- the commands the pages show

def page_commands():
    """[(page, command's words)] of every `python main.py`, `python -m cli.pack` and `python bench/X.py` command
    in README.md and docs/, in code blocks (continued lines joined, $VARIABLES set in the block expanded) and
    in inline code; `[`, `]` and a leading `...` (placeholders) dropped, comments and what follows `--` cut."""
    import glob
    import shlex
    found = []
    for page in [os.path.join(ROOT, 'README.md')] + sorted(glob.glob(os.path.join(ROOT, 'docs', '*.md'))):
        text = open(page).read()
        blocks = re.findall(r'```[a-z]*\n(.*?)```', text, re.S)
        inline = re.findall(r'`([^`\n]+)`', re.sub(r'```.*?```', '', text, flags=re.S))
        for block, is_block in [(b, True) for b in blocks] + [(i, False) for i in inline]:
            block = block.replace('\\\n', ' ')
            variables = dict(re.findall(r'^(\w+)="([^"]*)"', block, re.M)) if is_block else {}
            for line in block.splitlines():
                line = re.sub(r'\s#.*$', '', line) if is_block else line
                for part in line.split(';'):
                    match = re.search(r'python (main\.py|-m cli\.pack|bench/\w+\.py)(.*)$', part)
                    if not match:
                        continue
                    words = []
                    for word in shlex.split(match.group(2).replace('[', ' ').replace(']', ' ')):
                        words += shlex.split(variables.get(word[1:], word)) if word.startswith('$') else [word]
                    for end in ('--', '|', '\\|'):  # the flags another program gets; a pipe
                        if end in words:
                            words = words[:words.index(end)]
                    if words[:1] == ['...']:
                        words = words[1:]
                    found.append((os.path.basename(page), match.group(1), words))
    return found


def test_every_command_the_pages_show_parses():
    """A flag renamed or removed cannot leave a dead command in the pages: main.py's and cli.pack's commands
    parse with their parsers (values included); a bench script's flags are all in its --help."""
    import subprocess
    import sys
    from cli import flags, pack
    commands, wrong, helps = page_commands(), [], {}
    assert len([c for c in commands if c[1] == 'main.py']) > 30 and any(c[1].startswith('bench/') for c in commands)
    for page, program, words in commands:
        try:
            if program == 'main.py':
                flags.build_parser('').parse_args(words)
            elif program == '-m cli.pack':
                if len(words) >= 3:  # (shorter: the command named in a sentence)
                    pack.parse(words)
            else:
                if program not in helps:
                    helps[program] = subprocess.run([sys.executable, os.path.join(ROOT, program), '--help'], cwd=ROOT,
                                                    stdout=subprocess.PIPE, universal_newlines=True, timeout=120).stdout
                unknown = [w for w in words if re.match(r'--[a-z_]+(=|$)', w) and  # (not a value: "--scale 8")
                           not re.search(re.escape(w.split('=')[0]) + r'\b', helps[program])]
                if unknown:
                    wrong.append('%s: python %s %s: %s' % (page, program, ' '.join(words), unknown))
        except SystemExit as e:
            if e.code:  # (--help exits 0)
                wrong.append('%s: python %s %s' % (page, program, ' '.join(words)))
    assert wrong == []
