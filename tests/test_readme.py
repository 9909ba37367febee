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
    script.write_text(PROJECT + snippet + CHECK)
    env = {k: v for k, v in os.environ.items() if k != 'PYTHONPATH'}
    out = subprocess.run([sys.executable, str(script)], cwd=str(tmp_path), env=env, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, universal_newlines=True, timeout=300)
    assert out.returncode == 0 and out.stdout.strip().endswith('ok'), out.stderr[-3000:]
